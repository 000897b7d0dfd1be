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
//!    row to `Answer` (nothing is forced: the model answers after its own delimiter); an EOS is
//!    replaced by `answer_prefix` so that the row still answers.
//!    The tokens of a multi-token spelling before the completing one were already emitted; spell
//!    the delimiter by its distinctive first token when those must not remain (s1's reference code
//!    stops at `<|im_start|>` alone).
//!
//! **The forced answer prefix continues the stream.** Whenever the answer prefix is forced (at the
//! cap, or in place of an EOS), the longest proper prefix of it that the emitted stream already ends
//! with is not repeated: with the prefix `\n<|im_start|>answer\nFinal Answer:` and a model that just
//! wrote `\n` (the start of its own delimiter), the row forces `<|im_start|>answer\nFinal Answer:`,
//! so the text reads `.\n<|im_start|>answer`, not `.\n\n<|im_start|>answer`. Only the forced tokens
//! count in `forced_tokens`; every answer-prefix token counts as an answer token.
//!
//! In `Answer`, an EOS, an `answer_stop` spelling or `max_answer_tokens` ends the row (`Done`). The
//! forced answer prefix is always emitted whole and counts towards `max_answer_tokens`; no sampled
//! answer token is let through once the cap is reached, so with `max_answer_tokens = 0` a natural end
//! of thinking (or a prompt that already ended it) makes the row `Done` at once.
//! Forced tokens count in the phase they are emitted in and in `forced_tokens`; they never trigger
//! a transition themselves.
//!
//! **Matching runs over the whole stream.** The delimiter automaton is fed every token of the row,
//! the prompt included ([`BudgetBatch::process_prompt`]), forced tokens included, and is never reset
//! between phases: a spelling that spans the end of the prompt and the first generated tokens, or a
//! forced extension and the model's next tokens, is matched like any other. This is what "the
//! stream ends with the spelling" means and what a stack that re-tokenizes the whole text would see;
//! resetting at phase changes would make the result depend on where the phase changed.
//!
//! **Rollback is exact in every state.** Every step fed to an occupied row is recorded (up to
//! `max_rollback` of them), also the steps fed after it ended (done or error), which change nothing
//! but must be undone first: [`BudgetBatch::rollback`]`(slot, k)` after any `k` steps leaves the row
//! exactly as if they had never been fed.
//!
//! ## Steppers outside Rust
//! [`tables`] compiles a batch's specs into flat `i32` tables and moves row states out and back
//! in, so that a tensor mirror of [`RowState::step`] (e.g. inside a CUDA graph) can run the same
//! semantics on a device and hand the rows back to this core.
//!
//! ## Two output modes, one semantics
//! - Override ([`BudgetBatch::step`]): the caller samples, the core returns per row the token that
//!   replaces the sampled one, or -1.
//! - Mask ([`BudgetBatch::mask`] then [`BudgetBatch::advance`]): for stacks that only process
//!   logits. Per row: a token to force, or a set of banned tokens (the attempts to end: EOS and the
//!   tokens that would complete an end delimiter now) plus a redirect token (what override mode
//!   would emit instead: the next extension's first token, or, once ending is allowed, the answer
//!   prefix's next token in place of an EOS). The stack bans the banned tokens and gives their
//!   probability to the redirect token (greedy: the larger of the two logits; sampling at
//!   temperature `T`: `T * logsumexp` of both), and passes to `advance`, per row, a flag that says
//!   whether an emission of the redirect token stands for the end attempt: for a greedy row, when
//!   the best banned logit outranks the redirect token's own (higher, or equal with a lower id, as
//!   argmax breaks ties); for a sampled row, with a uniform draw below the banned tokens' share of
//!   the pooled probability. A flagged emission of the redirect token is counted as the end attempt
//!   and forces the rest of the extension (or answer prefix); an unflagged one is the model's own
//!   token (e.g. a "Wait" the model wrote itself, not counted). `s1kit.budget.adapters.masking::
//!   apply_mask` is that edit; it touches only the banned and redirect cells. Where the logits
//!   are in host memory, [`BudgetBatch::mask_logits`] (module [`edit`]) plans, edits and writes
//!   the flags in one call.
//!
//!   For greedy decoding mask mode emits exactly the tokens and accounting of override mode, except
//!   when the row's largest logit is tied exactly between an end attempt and a token other than the
//!   redirect token (the edit does not read the rest of the row). Under sampling the two have the
//!   same joint distribution over (token, accounting), but not the same stream for a given seed (the
//!   attribution uses its own draw); processors that a stack runs after the edit and that reshape
//!   the distribution (top-k, top-p, min-p, penalties) make it approximate
//!   (`bench/budget_mask_sampling.py` measures both).
//! - Specs that mask mode could not run exactly are refused by [`BudgetSpec::compile`]: an extension
//!   that starts with an EOS, starts with a `think_end` spelling (or equals one), or whose first
//!   token completes a `think_end` spelling (it would be banned and forced at once), and an answer
//!   prefix that holds an EOS id.

pub mod batch;
pub mod edit;
pub mod matcher;
pub mod row;
pub mod spec;
pub mod tables;

pub use batch::{BudgetBatch, MaskOut};
pub use edit::{EditOptions, EditSummary, ForcedWrite, Logit};
pub use matcher::Matcher;
pub use row::{Forcing, MaskPlan, Phase, Plan, Redirect, RowError, RowState};
pub use spec::{BudgetSpec, CompiledSpec};
pub use tables::{BatchTables, StateArrays};
