//! Deduplication and decontamination kernels for s1K-style data curation.
//!
//! - [`normalize`]: s1-compatible normalisation (`" ".join(text.lower().split())`, Python's exact
//!   whitespace set).
//! - [`ngram`]: word n-gram shingles and hashes, the evaluation-set [`ngram::NgramIndex`] and
//!   [`ngram::NgramIndex::decontaminate`]; the behaviour of texts shorter than `n` words.
//! - [`exact`]: duplicates of normalised text.
//! - [`minhash`] and [`lsh`]: seeded MinHash signatures, LSH banding, candidates verified by exact
//!   Jaccard ([`lsh::near_duplicates`]).
//! - [`union_find`]: clusters from pairs, with a deterministic kept member per cluster.
//! - [`cosine`]: exact all-pairs cosine similarity above a threshold for embedding dedup.
//!
//! Every function is deterministic: parallel work (rayon) is collected in input order or sorted, so
//! results do not depend on the number of threads.
//!
//! ```
//! use s1kit_core::dedup::{lsh, ngram, union_find};
//!
//! let eval = ["what is the sum of the first one hundred positive integers"];
//! let index = ngram::NgramIndex::build(&eval, 8).unwrap();
//! let pool = ["Q: What is the sum of the first one hundred positive integers?", "2 + 2"];
//! let hits = index.decontaminate(&pool, 1).unwrap();
//! assert_eq!((hits[0].doc, hits[0].item), (0, 0));
//!
//! let texts = ["a b c d e f g h i j", "a b c d e f g h i j", "x"];
//! let pairs = lsh::near_duplicates(&texts, &lsh::NearDupParams::default()).unwrap();
//! let edges: Vec<(u32, u32)> = pairs.iter().map(|&(i, j, _)| (i, j)).collect();
//! let roots = union_find::clusters(texts.len(), &edges).unwrap();
//! assert_eq!(roots, vec![0, 0, 2]);
//! ```

pub mod cosine;
pub mod exact;
pub mod lsh;
pub mod minhash;
pub mod ngram;
pub mod normalize;
pub mod union_find;
