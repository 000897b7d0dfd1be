//! Seeded MinHash signatures over word n-gram shingles.
//!
//! Permutation `p` maps a shingle hash, mixed and folded to 32 bits `x`, to `((a[p] x + b[p]) mod 2^64) >> 32`
//! with `a[p]`, `b[p]` random 64-bit numbers: Dietzfelbinger's multiply-add-shift, a strongly universal
//! family on 32-bit keys whose 64x32-bit multiply compilers vectorise. Signature values are therefore
//! 32-bit (stored as `u64`). `a` and `b`
//! come from SplitMix64 seeded with `seed`, so a signature depends only on the text, `n`, `num_perm`
//! and `seed`. The fraction of equal positions in two signatures estimates the
//! Jaccard similarity of the shingle sets; its standard error is `sqrt(J (1 - J) / num_perm)`.
//!
//! A text with no words has no shingles and therefore **no signature** (`None`): giving it the
//! all-`u64::MAX` signature would make every empty text a "duplicate" of every other.

use rayon::prelude::*;

use super::ngram::{fmix64, shingle_set};
use crate::{Error, Result};

/// Default number of permutations.
pub const DEFAULT_NUM_PERM: usize = 128;

/// SplitMix64: the seed expander for the permutation parameters.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A family of `num_perm` seeded permutations.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    seed: u64,
}

impl MinHasher {
    /// `num_perm` permutations drawn from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Result<Self> {
        if num_perm == 0 {
            return Err(Error::InvalidArgument(
                "num_perm must be at least 1 (128 is the usual choice)".into(),
            ));
        }
        let mut state = seed;
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(splitmix64(&mut state));
            b.push(splitmix64(&mut state));
        }
        Ok(MinHasher { a, b, seed })
    }

    /// Number of permutations (signature length).
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The seed the permutations were drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The signature of a set of shingle hashes, or `None` for the empty set.
    pub fn signature(&self, shingles: &[u64]) -> Option<Vec<u64>> {
        if shingles.is_empty() {
            return None;
        }
        let mut sig = vec![u64::MAX; self.a.len()];
        self.fill(shingles, &mut sig);
        Some(sig)
    }

    /// Write the signature of a non-empty shingle set into `out` (length `num_perm`).
    fn fill(&self, shingles: &[u64], out: &mut [u64]) {
        let mut acc = vec![u32::MAX; self.a.len()];
        for &h in shingles {
            // Mix first: callers may pass structured (non-hashed) values.
            let m = fmix64(h);
            let x = u64::from((m ^ (m >> 32)) as u32);
            for ((o, &a), &b) in acc.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *o = (*o).min(v);
            }
        }
        for (o, v) in out.iter_mut().zip(acc) {
            *o = u64::from(v);
        }
    }

    /// Signatures of many texts' `n`-gram shingle sets, row-major `(texts.len(), num_perm)`, and
    /// whether each text has one (a row without a signature is left all `u64::MAX`).
    pub fn signatures(&self, texts: &[&str], n: usize) -> Result<(Vec<u64>, Vec<bool>)> {
        if n == 0 {
            return Err(Error::InvalidArgument("n must be at least 1".into()));
        }
        let sets: Vec<Vec<u64>> = texts.par_iter().map(|t| shingle_set(t, n)).collect();
        Ok(self.signatures_of_sets(&sets))
    }

    /// Signatures of precomputed shingle sets, laid out as in [`MinHasher::signatures`].
    pub fn signatures_of_sets(&self, sets: &[Vec<u64>]) -> (Vec<u64>, Vec<bool>) {
        let p = self.num_perm();
        let mut sigs = vec![u64::MAX; sets.len() * p];
        let has: Vec<bool> = sigs
            .par_chunks_mut(p)
            .zip(sets.par_iter())
            .map(|(row, set)| {
                if set.is_empty() {
                    return false;
                }
                self.fill(set, row);
                true
            })
            .collect();
        (sigs, has)
    }
}

/// The MinHash estimate of Jaccard similarity: the fraction of positions where the signatures agree.
pub fn estimate_jaccard(a: &[u64], b: &[u64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

/// Exact Jaccard similarity of two sorted, distinct sets (1.0 for two empty sets).
pub fn jaccard_sorted(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sets_identical_signatures_and_empty_has_none() {
        let m = MinHasher::new(64, 7).unwrap();
        let s = m.signature(&[1, 2, 3]).unwrap();
        assert_eq!(Some(s.clone()), m.signature(&[3, 2, 1]));
        assert_eq!(estimate_jaccard(&s, &s), 1.0);
        assert!(m.signature(&[]).is_none());
        let (sigs, has) = m.signatures(&["", "a b c", "  "], 2).unwrap();
        assert_eq!(has, vec![false, true, false]);
        assert_eq!(sigs.len(), 3 * 64);
        assert!(MinHasher::new(0, 0).is_err());
    }

    #[test]
    fn exact_jaccard() {
        assert_eq!(jaccard_sorted(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard_sorted(&[], &[]), 1.0);
        assert_eq!(jaccard_sorted(&[1], &[]), 0.0);
    }
}
