//! Word n-gram shingles, their 64-bit hashes, and the n-gram index used for decontamination.
//!
//! A *shingle* is a window of `n` consecutive normalised words (see [`super::normalize`]); its hash
//! depends on the words and on how many there are. Short texts:
//!
//! - a text with `n` or more words yields `words - n + 1` shingles, exactly s1's `word_ngrams`;
//! - a text with `1 <= k < n` words yields **one** shingle, all of its `k` words. Because the hash
//!   includes the word count, it can only equal the shingle of another text with the same `k` words,
//!   never a window of a longer text: short texts match only texts that are identical after
//!   normalisation (s1 would give them no n-grams at all and so never flag them);
//! - a text with no words yields no shingle. It is never contaminated and never a near-duplicate;
//!   it has no MinHash signature (so empty texts cannot all collide into one shared signature).
//!   Exact dedup still groups identical texts, empty ones included.
//!
//! Hashes are 64-bit: two different shingles collide with probability about 2^-64 per pair, so a
//! pool of 10^8 shingles against an index of 10^7 expects fewer than 10^-4 false matches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

use super::normalize::{for_each_word, is_ascii_py_whitespace, is_py_whitespace, lowercase, words};
use crate::{Error, Result};

/// Default shingle width, as in s1's 8-gram decontamination.
pub const DEFAULT_N: usize = 8;

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// The murmur3 64-bit finaliser: a bijection that spreads every input bit over the output.
#[inline]
pub fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A fast, platform-independent 64-bit hash of a word's bytes.
#[inline]
pub fn hash_word(word: &str) -> u64 {
    hash_word_bytes(word.as_bytes())
}

/// [`hash_word`] on the word's UTF-8 bytes.
#[inline]
pub fn hash_word_bytes(bytes: &[u8]) -> u64 {
    hash_bytes_mapped(bytes, 0, bytes.len(), |v| v)
}

/// The word hash of `bytes[start..end]`, each little-endian 8-byte block (the last one zero-padded)
/// passed through `map` first: the identity for [`hash_word_bytes`], ASCII lowercasing for
/// [`hash_ascii_word_lower`].
#[inline(always)]
fn hash_bytes_mapped(bytes: &[u8], start: usize, end: usize, map: impl Fn(u64) -> u64) -> u64 {
    let mut h = K0 ^ ((end - start) as u64).wrapping_mul(K1);
    let mut at = start;
    while at + 8 <= end {
        h = (h ^ map(load_padded(bytes, at, 8)))
            .wrapping_mul(K1)
            .rotate_left(29);
        at += 8;
    }
    if at < end {
        h = (h ^ map(load_padded(bytes, at, end - at)))
            .wrapping_mul(K1)
            .rotate_left(29);
    }
    fmix64(h)
}

/// Eight ASCII bytes lowercased at once: every byte is below 0x80, so the per-byte additions below
/// never carry into the next byte; bit 7 of each sum says whether the byte is `>= 'A'` or `> 'Z'`.
#[inline]
fn ascii_lower8(v: u64) -> u64 {
    let ge_a = v.wrapping_add(ONES * (0x80 - u64::from(b'A')));
    let gt_z = v.wrapping_add(ONES * (0x7f - u64::from(b'Z')));
    v | (((ge_a & !gt_z) & (ONES * 0x80)) >> 2)
}

const ONES: u64 = 0x0101_0101_0101_0101;

/// The little-endian `u64` of `bytes[at..at + len]` (`len <= 8`) padded with zero bytes. Reads eight
/// bytes and masks when they are in bounds (no copy through memory), else byte by byte.
#[inline]
fn load_padded(bytes: &[u8], at: usize, len: usize) -> u64 {
    debug_assert!(len <= 8);
    if let Some(c) = bytes.get(at..at + 8) {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        return if len == 8 {
            v
        } else {
            v & ((1u64 << (8 * len)) - 1)
        };
    }
    bytes[at..at + len]
        .iter()
        .rev()
        .fold(0u64, |v, &b| (v << 8) | u64::from(b))
}

/// [`hash_word_bytes`] of the lowercase of the ASCII word `bytes[start..end]`, without building it.
#[inline]
fn hash_ascii_word_lower(bytes: &[u8], start: usize, end: usize) -> u64 {
    hash_bytes_mapped(bytes, start, end, ascii_lower8)
}

/// The first index `j >= i` with `bytes[j] <= b' '` or `bytes[j] >= 0x80` (whitespace candidates and
/// non-ASCII), or `bytes.len()`; eight bytes at a time. Per 8-byte word, `(x - 0x21..) & !x & 0x80..`
/// flags bytes below 0x21; a borrow can only flag bytes above a truly flagged one, so the lowest flag
/// (the one taken) is exact.
#[inline]
fn next_special(bytes: &[u8], mut i: usize) -> usize {
    let n = bytes.len();
    while i + 8 <= n {
        let x = load_padded(bytes, i, 8);
        let m = (x.wrapping_sub(ONES * 0x21) & !x | x) & (ONES * 0x80);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && bytes[i] > b' ' && bytes[i] < 0x80 {
        i += 1;
    }
    i
}

/// The byte length of the Python whitespace character at `bytes[i]` (a char boundary of `text`), or 0.
#[inline]
fn ws_len_at(text: &str, i: usize) -> usize {
    let b = text.as_bytes()[i];
    if b < 0x80 {
        return usize::from(is_ascii_py_whitespace(b));
    }
    let c = text[i..].chars().next().expect("i is on a char boundary");
    if is_py_whitespace(c) {
        c.len_utf8()
    } else {
        0
    }
}

/// Append [`hash_word_bytes`] of every word of `text.lower().split()` to `out`, in order, building
/// nothing for all-ASCII words (nearly every word of a math pool, whatever whitespace separates them):
/// they are hashed straight from `text`, lowercased eight bytes at a time. Words with other
/// characters are lowercased into a buffer as [`for_each_word`] does. A capital sigma (whose
/// lowercase depends on its neighbours) sends the whole text to [`for_each_word`]'s exact path.
pub(crate) fn word_hashes_into(text: &str, out: &mut Vec<u64>) {
    let first = out.len();
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut word: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < n {
        let ws = ws_len_at(text, i);
        if ws > 0 {
            i += ws;
            continue;
        }
        let start = i;
        let mut ascii_word = true;
        while i < n {
            i = next_special(bytes, i);
            if i == n {
                break;
            }
            let b = bytes[i];
            if b < 0x80 {
                if is_ascii_py_whitespace(b) {
                    break;
                }
                i += 1;
            } else {
                let c = text[i..].chars().next().expect("i is on a char boundary");
                if is_py_whitespace(c) {
                    break;
                }
                if c == 'Σ' {
                    out.truncate(first);
                    for_each_word(text, |w| out.push(hash_word_bytes(w)));
                    return;
                }
                ascii_word = false;
                i += c.len_utf8();
            }
        }
        if ascii_word {
            out.push(hash_ascii_word_lower(bytes, start, i));
        } else {
            word.clear();
            let mut buf = [0u8; 4];
            for c in text[start..i].chars() {
                for l in c.to_lowercase() {
                    word.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
                }
            }
            out.push(hash_word_bytes(&word));
        }
    }
}

/// Base of the polynomial shingle hash (odd, so multiplication by it is a bijection of `u64`).
const POLY_BASE: u64 = 0x2545_f491_4f6c_dd1d;

/// The hash of one shingle from its words' hashes: `fmix64(sum w_i B^(k-1-i) ^ k K0)` over the `k`
/// words (order matters; the count is part of the hash). The polynomial lets [`shingle_hashes`] roll
/// the window in O(1) per word.
#[inline]
pub fn hash_shingle(word_hashes: &[u64]) -> u64 {
    let poly = word_hashes
        .iter()
        .fold(0u64, |h, &w| h.wrapping_mul(POLY_BASE).wrapping_add(w));
    finish_shingle(poly, word_hashes.len())
}

#[inline]
fn finish_shingle(poly: u64, k: usize) -> u64 {
    fmix64(poly ^ (k as u64).wrapping_mul(K0))
}

/// Append the shingle hashes of `text` to `out`, reusing `words_buf` for the word hashes.
pub(crate) fn shingle_hashes_into(
    text: &str,
    n: usize,
    words_buf: &mut Vec<u64>,
    out: &mut Vec<u64>,
) {
    words_buf.clear();
    word_hashes_into(text, words_buf);
    let wh = &words_buf[..];
    if wh.is_empty() {
        return;
    }
    if wh.len() < n {
        out.push(hash_shingle(wh));
        return;
    }
    // B^(n-1): the weight of the word leaving the window.
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(POLY_BASE));
    let mut poly = wh[..n]
        .iter()
        .fold(0u64, |h, &w| h.wrapping_mul(POLY_BASE).wrapping_add(w));
    out.reserve(wh.len() - n + 1);
    out.push(finish_shingle(poly, n));
    for i in n..wh.len() {
        poly = poly
            .wrapping_sub(wh[i - n].wrapping_mul(top))
            .wrapping_mul(POLY_BASE)
            .wrapping_add(wh[i]);
        out.push(finish_shingle(poly, n));
    }
}

fn check_n(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument(
            "n must be at least 1 (the number of words per n-gram; s1 uses 8)".into(),
        ));
    }
    Ok(())
}

/// The shingle hashes of `text` in text order, repeats kept. See the module doc for short texts.
pub fn shingle_hashes(text: &str, n: usize) -> Result<Vec<u64>> {
    check_n(n)?;
    Ok(shingle_hashes_unchecked(text, n))
}

pub(crate) fn shingle_hashes_unchecked(text: &str, n: usize) -> Vec<u64> {
    let (mut words_buf, mut out) = (Vec::new(), Vec::new());
    shingle_hashes_into(text, n, &mut words_buf, &mut out);
    out
}

/// The distinct shingle hashes of `text`, sorted ascending.
pub(crate) fn shingle_set(text: &str, n: usize) -> Vec<u64> {
    let mut s = shingle_hashes_unchecked(text, n);
    s.sort_unstable();
    s.dedup();
    s
}

/// The shingles of `text` as strings (`" ".join` of the words), the same windows that
/// [`shingle_hashes`] hashes. For texts of at least `n` words this equals s1's `word_ngrams`.
pub fn word_ngrams(text: &str, n: usize) -> Result<Vec<String>> {
    check_n(n)?;
    let lower = lowercase(text);
    let w: Vec<&str> = words(&lower).collect();
    if w.is_empty() {
        return Ok(Vec::new());
    }
    if w.len() < n {
        return Ok(vec![w.join(" ")]);
    }
    Ok(w.windows(n).map(|g| g.join(" ")).collect())
}

/// A `Hasher` for keys that are already uniformly distributed 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub struct PrehashedU64(u64);

impl Hasher for PrehashedU64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by shingle hashes.
pub type ShingleMap<V> = HashMap<u64, V, BuildHasherDefault<PrehashedU64>>;

/// One contamination: pool document `doc` shares `shared` distinct n-grams with evaluation item `item`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Match {
    pub doc: u32,
    pub item: u32,
    pub shared: u32,
}

/// Every n-gram of a set of evaluation items, mapped to the items that contain it.
#[derive(Debug, Clone)]
pub struct NgramIndex {
    n: usize,
    num_items: usize,
    // shingle hash -> ascending, distinct item ids
    postings: ShingleMap<Vec<u32>>,
    // One bit per (high bits of a) shingle hash present in `postings`: a cache-resident prefilter, since
    // almost every pool shingle is absent from the index and a map probe is a cache miss.
    filter: Vec<u64>,
    filter_shift: u32,
}

impl NgramIndex {
    /// Index `items` (e.g. every question of the evaluation sets) by their `n`-gram shingles.
    pub fn build(items: &[&str], n: usize) -> Result<Self> {
        check_n(n)?;
        if items.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(
                "at most 2^32 - 1 items can be indexed".into(),
            ));
        }
        let sets: Vec<Vec<u64>> = items.par_iter().map(|t| shingle_set(t, n)).collect();
        let mut postings: ShingleMap<Vec<u32>> = ShingleMap::default();
        // Items are visited in order, so every posting list is ascending and distinct.
        for (item, set) in sets.iter().enumerate() {
            for &h in set {
                postings.entry(h).or_default().push(item as u32);
            }
        }
        // About 8 bits per indexed n-gram (false-positive rate ~12%), between 2^16 and 2^26 bits.
        let bits = (postings.len() * 8)
            .next_power_of_two()
            .clamp(1 << 16, 1 << 26);
        let filter_shift = 64 - bits.trailing_zeros();
        let mut filter = vec![0u64; bits / 64];
        for &h in postings.keys() {
            let b = (h >> filter_shift) as usize;
            filter[b >> 6] |= 1 << (b & 63);
        }
        Ok(NgramIndex {
            n,
            num_items: items.len(),
            postings,
            filter,
            filter_shift,
        })
    }

    /// The shingle width.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of indexed items.
    pub fn num_items(&self) -> usize {
        self.num_items
    }
    /// Number of distinct n-grams in the index.
    pub fn num_ngrams(&self) -> usize {
        self.postings.len()
    }

    /// Every (document, item) pair sharing at least `min_shared` distinct n-grams, sorted by document
    /// then item. Parallel over documents; the result does not depend on the thread count.
    pub fn decontaminate(&self, docs: &[&str], min_shared: u32) -> Result<Vec<Match>> {
        if min_shared == 0 {
            return Err(Error::InvalidArgument(
                "min_shared must be at least 1 (the number of shared n-grams that flags a document)".into(),
            ));
        }
        if docs.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(
                "at most 2^32 - 1 documents per call".into(),
            ));
        }
        let per_doc: Vec<Vec<Match>> = docs
            .par_iter()
            .enumerate()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(words_buf, shingles), (doc, text)| {
                    shingles.clear();
                    shingle_hashes_into(text, self.n, words_buf, shingles);
                    self.matches_of(doc as u32, shingles, min_shared)
                },
            )
            .collect();
        Ok(per_doc.into_iter().flatten().collect())
    }

    /// Matches of one document given its shingle hashes (in text order, repeats allowed).
    fn matches_of(&self, doc: u32, shingles: &[u64], min_shared: u32) -> Vec<Match> {
        // Most documents share nothing: look every shingle up first, deduplicate only the hits.
        let mut hit_shingles: Vec<u64> = shingles
            .iter()
            .copied()
            .filter(|&h| {
                let b = (h >> self.filter_shift) as usize;
                self.filter[b >> 6] >> (b & 63) & 1 == 1 && self.postings.contains_key(&h)
            })
            .collect();
        if hit_shingles.is_empty() {
            return Vec::new();
        }
        hit_shingles.sort_unstable();
        hit_shingles.dedup();
        let mut hits: Vec<u32> = Vec::new();
        for h in &hit_shingles {
            hits.extend_from_slice(&self.postings[h]);
        }
        hits.sort_unstable();
        let mut out = Vec::new();
        let mut i = 0;
        while i < hits.len() {
            let mut j = i;
            while j < hits.len() && hits[j] == hits[i] {
                j += 1;
            }
            let shared = (j - i) as u32;
            if shared >= min_shared {
                out.push(Match {
                    doc,
                    item: hits[i],
                    shared,
                });
            }
            i = j;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_get_one_distinct_shingle() {
        let a = shingle_hashes("two words", 8).unwrap();
        let b = shingle_hashes("Two   WORDS", 8).unwrap();
        let c = shingle_hashes("other words", 8).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(shingle_hashes(" \n ", 8).unwrap().is_empty());
        assert_eq!(word_ngrams("a b c", 2).unwrap(), vec!["a b", "b c"]);
        assert_eq!(word_ngrams("A", 2).unwrap(), vec!["a"]);
    }

    #[test]
    fn index_finds_shared_ngrams() {
        let items = ["the quick brown fox jumps", "lorem ipsum dolor sit amet"];
        let idx = NgramIndex::build(&items, 3).unwrap();
        let docs = [
            "a QUICK brown fox ran",
            "nothing here at all",
            "lorem ipsum dolor sit amet",
        ];
        let m = idx.decontaminate(&docs, 1).unwrap();
        assert_eq!(
            m,
            vec![
                Match {
                    doc: 0,
                    item: 0,
                    shared: 1
                },
                Match {
                    doc: 2,
                    item: 1,
                    shared: 3
                }
            ]
        );
        assert!(idx.decontaminate(&docs, 0).is_err());
    }

    #[test]
    fn ascii_fast_path_hashes_the_lowercased_words() {
        // Every ASCII byte, Python's ASCII whitespace included, in words of every chunk length.
        let all: String = (0u8..128).map(char::from).collect();
        let texts = [
            all.clone(),
            all.to_uppercase(),
            "Hello  WORLD\x1c\x1dA\x0bb\x0cC\rD\te @[`{ AZaz AbCdEfGhIjKlMnOpQrStUvWxYz".into(),
            " \t\n ".into(),
            String::new(),
        ];
        for t in &texts {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            word_hashes_into(t, &mut fast);
            for_each_word(t, |w| slow.push(hash_word_bytes(w)));
            assert_eq!(fast, slow, "{t:?}");
            let py: Vec<u64> = lowercase(t)
                .split(is_py_whitespace)
                .filter(|w| !w.is_empty())
                .map(hash_word)
                .collect();
            assert_eq!(fast, py, "{t:?}");
        }
        for b in 0u8..128 {
            assert_eq!(is_ascii_py_whitespace(b), is_py_whitespace(char::from(b)));
            let v = u64::from(b) * 0x0101_0101_0101_0101;
            let l = u64::from(b.to_ascii_lowercase()) * 0x0101_0101_0101_0101;
            assert_eq!(ascii_lower8(v), l, "{b}");
        }
    }
}
