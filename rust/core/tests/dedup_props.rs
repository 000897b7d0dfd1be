//! Invariants of the dedup kernels, checked on random inputs.

use proptest::prelude::*;
use s1kit_core::dedup::cosine::cosine_pairs;
use s1kit_core::dedup::lsh::{near_duplicates, NearDupParams};
use s1kit_core::dedup::minhash::{estimate_jaccard, jaccard_sorted, MinHasher};
use s1kit_core::dedup::ngram::{hash_shingle, hash_word, shingle_hashes, NgramIndex};
use s1kit_core::dedup::normalize::{lowercase, words};
use s1kit_core::dedup::union_find::{clusters, keepers};

fn sorted_set(v: &[u64]) -> Vec<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.dedup();
    s
}

/// Components by a naive flood fill; each labelled with its smallest member.
fn naive_roots(n: usize, edges: &[(u32, u32)]) -> Vec<u32> {
    let mut label: Vec<u32> = (0..n as u32).collect();
    loop {
        let mut changed = false;
        for &(a, b) in edges {
            let m = label[a as usize].min(label[b as usize]);
            for x in [a, b] {
                if label[x as usize] != m {
                    label[x as usize] = m;
                    changed = true;
                }
            }
        }
        if !changed {
            return label;
        }
    }
}

/// Shingle hashes the slow, obvious way: lowercase the whole text, split, hash each window.
fn naive_shingles(text: &str, n: usize) -> Vec<u64> {
    let lower = lowercase(text);
    let w: Vec<u64> = words(&lower).map(hash_word).collect();
    match w.len() {
        0 => Vec::new(),
        k if k < n => vec![hash_shingle(&w)],
        _ => w.windows(n).map(hash_shingle).collect(),
    }
}

/// Characters that exercise every path of the word splitter: ASCII letters of both cases and
/// punctuation, ASCII and Unicode whitespace (Python's set, and U+200B which is not in it), letters
/// whose lowercase changes length ('İ'), and capital sigma (context-dependent lowercase).
const ALPHABET: &[char] = &[
    'a', 'B', 'z', 'Z', '@', '[', '`', '{', '0', ' ', '\t', '\n', '\x0b', '\x1c', '\u{85}',
    '\u{a0}', '\u{2009}', '\u{3000}', '\u{200b}', 'É', 'ß', 'İ', 'Σ', 'σ', 'ς', 'Ω', '中',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The splitter's fast paths (ASCII words hashed in place) give the naive result on any text.
    #[test]
    fn shingle_hashes_match_the_naive_definition(
        parts in proptest::collection::vec((0..ALPHABET.len(), 0usize..20, any::<u8>()), 0..40),
        n in 1usize..6
    ) {
        // Each part: one alphabet character, then an ASCII run of 0-19 mixed-case letters and digits
        // (long runs cross the splitter's 8-byte blocks at every offset).
        let text: String = parts
            .iter()
            .flat_map(|&(i, run, seed)| {
                std::iter::once(ALPHABET[i]).chain((0..run).map(move |k| {
                    char::from(b"aBcDeFgHiJkLmNoPqRsTuVwXyZ0189"[(usize::from(seed) + k * 7) % 30])
                }))
            })
            .collect();
        prop_assert_eq!(shingle_hashes(&text, n).unwrap(), naive_shingles(&text, n));
        let no_sigma = text.replace('Σ', "S");
        prop_assert_eq!(shingle_hashes(&no_sigma, n).unwrap(), naive_shingles(&no_sigma, n));
    }

    /// The MinHash estimate stays within 5 standard errors (plus one position) of the exact Jaccard.
    #[test]
    fn minhash_estimate_within_bounds(
        common in 0usize..200, only_a in 0usize..200, only_b in 0usize..200, seed in any::<u64>()
    ) {
        prop_assume!(common + only_a > 0 && common + only_b > 0);
        let base = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let a: Vec<u64> = (0..common + only_a).map(|k| base.wrapping_add(k as u64 * 0x1234_5679)).collect();
        let b: Vec<u64> = (0..common)
            .chain(common + only_a..common + only_a + only_b)
            .map(|k| base.wrapping_add(k as u64 * 0x1234_5679))
            .collect();
        let j = jaccard_sorted(&sorted_set(&a), &sorted_set(&b));
        let p = 256;
        let m = MinHasher::new(p, seed).unwrap();
        let est = estimate_jaccard(&m.signature(&a).unwrap(), &m.signature(&b).unwrap());
        let se = (j * (1.0 - j) / p as f64).sqrt();
        prop_assert!((est - j).abs() <= 5.0 * se + 1.0 / p as f64, "est {est} exact {j}");
        if j == 1.0 { prop_assert_eq!(est, 1.0); }
        if j == 0.0 { prop_assert!(est <= 2.0 / p as f64); }
    }

    /// Roots do not depend on edge order and equal the smallest member of each component.
    #[test]
    fn union_find_is_deterministic(
        n in 1usize..60, raw in prop::collection::vec((0u32..60, 0u32..60), 0..80), rot in 0usize..80
    ) {
        let edges: Vec<(u32, u32)> = raw.into_iter().filter(|&(a, b)| (a as usize) < n && (b as usize) < n).collect();
        let mut shuffled = edges.clone();
        if !shuffled.is_empty() { let r = rot % shuffled.len(); shuffled.rotate_left(r); }
        shuffled.reverse();
        let swapped: Vec<(u32, u32)> = shuffled.iter().map(|&(a, b)| (b, a)).collect();
        let r1 = clusters(n, &edges).unwrap();
        prop_assert_eq!(&r1, &clusters(n, &swapped).unwrap());
        prop_assert_eq!(&r1, &naive_roots(n, &edges));
        let k = keepers(&r1, None).unwrap();
        prop_assert_eq!(&k, &r1);
    }

    /// Every planted 8-word window is found, with a shared count no larger than the document's n-grams.
    #[test]
    fn decontaminate_finds_planted_windows(
        words in prop::collection::vec("[a-z]{1,6}", 8..40), start in 0usize..32, noise in prop::collection::vec("[0-9]{3}", 0..20)
    ) {
        let item = words.join(" ");
        let s = start % (words.len() - 7);
        let window = words[s..s + 8].join(" ").to_uppercase();
        let doc = format!("{} {} {}", noise.join(" "), window, noise.join("\t"));
        let index = NgramIndex::build(&[item.as_str()], 8).unwrap();
        let hits = index.decontaminate(&[doc.as_str(), "0 1 2 3 4 5 6 7 8"], 1).unwrap();
        prop_assert_eq!(hits.len(), 1);
        prop_assert_eq!((hits[0].doc, hits[0].item), (0, 0));
        let distinct = sorted_set(&shingle_hashes(&doc, 8).unwrap()).len() as u32;
        prop_assert!(hits[0].shared >= 1 && hits[0].shared <= distinct);
    }

    /// Cosine pairs do not depend on the tile size.
    #[test]
    fn cosine_pairs_independent_of_block(
        n in 1usize..50, d in 1usize..9, seed in any::<u32>(), block in 1usize..20
    ) {
        let data: Vec<f32> = (0..n * d)
            .map(|k| ((k as u64 + 1).wrapping_mul(seed as u64 | 1).wrapping_mul(2_654_435_761) % 97) as f32 / 48.0 - 1.0)
            .collect();
        let all = cosine_pairs(&data, n, d, 0.2, 4096).unwrap();
        let tiled = cosine_pairs(&data, n, d, 0.2, block).unwrap();
        let key = |v: &[(u32, u32, f32)]| v.iter().map(|&(i, j, _)| (i, j)).collect::<Vec<_>>();
        // Sums may round differently per tile; only pairs far from the threshold must agree.
        let far = |v: &[(u32, u32, f32)]| key(&v.iter().copied().filter(|p| p.2 > 0.2 + 1e-4).collect::<Vec<_>>());
        prop_assert_eq!(far(&all), far(&tiled));
        for w in tiled.windows(2) { prop_assert!((w[0].0, w[0].1) < (w[1].0, w[1].1)); }
    }
}

/// Results are identical with one thread and with many.
#[test]
fn near_duplicates_independent_of_thread_count() {
    let texts: Vec<String> = (0..300)
        .map(|i| {
            let base = i / 3; // triples of near-identical texts
            let mut w: Vec<String> = (0..40).map(|k| format!("t{}w{}", base, k)).collect();
            // Edit the first word, the last word, or nothing: pairwise Jaccard >= 31/35.
            match i % 3 {
                0 => w[0] = format!("edit{i}"),
                1 => w[39] = format!("edit{i}"),
                _ => {}
            }
            w.join(" ")
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let p = NearDupParams {
        threshold: 0.85,
        ..Default::default()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let a = one.install(|| near_duplicates(&refs, &p).unwrap());
    let b = four.install(|| near_duplicates(&refs, &p).unwrap());
    assert_eq!(a, b);
    assert_eq!(a.len(), 300, "each triple has 3 near-duplicate pairs");
}
