//! The one error type of `s1kit-core`.

use thiserror::Error;

/// Every failure `s1kit-core` reports. Bindings convert each variant in one place.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A budget specification is inconsistent; the message names the field and the fix.
    #[error("invalid budget spec: {0}")]
    InvalidSpec(String),
    /// A call was given arrays of the wrong length or a slot outside the batch.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The slot holds no row.
    #[error("slot {0} is empty: insert a row with `insert` first")]
    EmptySlot(usize),
    /// `rollback` asked for more tokens than the row's history keeps.
    #[error("cannot roll back {requested} tokens: the row keeps only {available} (raise `max_rollback`)")]
    RollbackTooDeep { requested: usize, available: usize },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
