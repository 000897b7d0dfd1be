//! Budget forcing, token by token.
//!
//! ## Semantics (one row)
//! A row is in one [`Phase`]: `PreThink` until a `think_start` spelling is emitted (rows whose spec
//! has none start in `Thinking`), `Thinking`, `Answer`, then `Done`; `Error` if the caller feeds an
//! invalid token. Each decode step the row emits exactly one token: the sampled one, or a forced one.
//!
//! In `Thinking`, in this order of precedence:
//! 1. A forced sequence in progress (an extension or the answer prefix) is emitted whole, in order.
//! 2. **Cap**: once `thinking_tokens >= max_thinking_tokens` (and, with `grace_tokens = G > 0`, once
//!    a newline token was emitted or `G` more tokens were), the row switches to `Answer` and forces
//!    `answer_prefix` (the end delimiter followed by e.g. "Final Answer:").
//! 3. **Attempt to end**: the sampled token completes a `think_end` spelling (matched incrementally
//!    across steps by [`matcher::Matcher`]) or is an EOS. While `thinking_tokens <
//!    min_thinking_tokens` or `extensions_used < num_extensions`, the token is replaced by the next
//!    extension (cycled), which is then forced whole. When ending is allowed, a delimiter moves the
//!    row to `Answer`; an EOS is replaced by `answer_prefix` so that the row still answers.
//!    The tokens of a multi-token spelling before the completing one were already emitted; spell
//!    the delimiter by its distinctive first token when those must not remain (s1's reference code
//!    stops at `<|im_start|>` alone).
//!
//! In `Answer`, an EOS, an `answer_stop` spelling or `max_answer_tokens` ends the row (`Done`).
//! Forced tokens count in the phase they are emitted in and in `forced_tokens`; they never trigger
//! a transition themselves.
//!
//! ## Steppers outside Rust
//! [`tables`] compiles a batch's specs into flat `i32` tables and moves row states out and back
//! in, so that a tensor mirror of [`RowState::step`] (e.g. inside a CUDA graph) can run the same
//! semantics on a device and hand the rows back to this core.
//!
//! ## Two output modes
//! - Override ([`BudgetBatch::step`]): the caller samples, the core returns per row the token that
//!   replaces the sampled one, or -1.
//! - Mask ([`BudgetBatch::mask`] then [`BudgetBatch::advance`]): for stacks that only process
//!   logits. Per row: a token to force, or a set of banned tokens (the end attempts) plus a redirect
//!   token (the first token of the extension) onto which the banned tokens' probability mass must be
//!   moved (`logit[r] = logsumexp(logit[r], logit[banned])`). Emitting the redirect token then
//!   counts as the end attempt and forces the rest of the extension. For sampling this has exactly
//!   the distribution of override mode over the first token; a natural emission of the redirect
//!   token is indistinguishable from a redirected one and is counted as an extension. A stack that
//!   only edits logits cannot replace a sampled EOS, so in mask mode an allowed EOS in the thinking
//!   span ends the row instead of forcing the answer prefix.

pub mod batch;
pub mod matcher;
pub mod row;
pub mod spec;
pub mod tables;

pub use batch::{BudgetBatch, MaskOut};
pub use matcher::Matcher;
pub use row::{Forcing, Phase, Plan, Redirect, RowError, RowState};
pub use spec::{BudgetSpec, CompiledSpec};
pub use tables::{BatchTables, StateArrays};
