//! # s1kit-core
//!
//! The pure-Rust heart of s1kit: no Python, no torch.
//!
//! - [`budget`]: the token-level budget-forcing state machine of "s1: Simple test-time scaling",
//!   made exact. One call per decode step advances a whole batch of rows, each with its own
//!   [`budget::BudgetSpec`]: cap the thinking span and force the answer, or suppress an early end of
//!   thinking and force "Wait" instead.
//! - [`dedup`]: s1K-style curation kernels: s1-compatible normalisation, 8-gram decontamination,
//!   exact and MinHash-LSH near-duplicate detection, union-find clusters, blocked all-pairs cosine.
//!
//! ```
//! use std::sync::Arc;
//! use s1kit_core::budget::{BudgetBatch, BudgetSpec, Phase};
//!
//! // Token ids: 1 = "<think>", 2 = "</think>", 3 = "Wait", 9 = EOS; the rest are ordinary text.
//! let spec = BudgetSpec {
//!     think_start: vec![vec![1]],
//!     think_end: vec![vec![2]],
//!     eos: vec![9],
//!     answer_prefix: vec![2],
//!     extensions: vec![vec![3]],
//!     num_extensions: 1,
//!     max_thinking_tokens: Some(4),
//!     ..BudgetSpec::new(16)
//! };
//! let mut batch = BudgetBatch::new(1, 8);
//! batch.insert(0, Arc::new(spec.compile().unwrap())).unwrap();
//! batch.process_prompt(0, &[5, 1]).unwrap(); // the prompt opens the thinking span
//! let mut out = [0i32];
//! batch.step(&[7], &mut out).unwrap(); // an ordinary thinking token: no override
//! assert_eq!(out[0], -1);
//! batch.step(&[2], &mut out).unwrap(); // an early "</think>": replaced by "Wait"
//! assert_eq!(out[0], 3);
//! batch.step(&[7], &mut out).unwrap();
//! batch.step(&[7], &mut out).unwrap(); // fourth thinking token: the cap is reached
//! batch.step(&[7], &mut out).unwrap(); // so "</think>" is forced
//! assert_eq!(out[0], 2);
//! assert_eq!(batch.state(0).unwrap().phase, Phase::Answer);
//! ```

#![forbid(unsafe_code)]

pub mod budget;
pub mod dedup;
pub mod error;

pub use error::{Error, Result};
