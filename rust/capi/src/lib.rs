//! # s1kit C ABI
//!
//! The budget-forcing batch of `s1kit-core` for C and C++ inference engines (llama.cpp-style
//! samplers, custom servers). Same semantics as the Rust and Python APIs (see
//! `s1kit_core::budget`): override mode ([`s1kit_batch_step`]) or mask mode ([`s1kit_batch_mask`]
//! then [`s1kit_batch_advance`]).
//!
//! Contract, for every function:
//! - Handles are opaque ([`S1kitSpec`], [`S1kitBatch`]); create them with `*_new`, release them
//!   with `*_free`. A spec may be freed as soon as it was inserted: rows share it by reference count.
//! - Every fallible call returns an [`S1kitStatus`]; on failure [`s1kit_last_error`] gives a message
//!   naming the problem and the fix (per thread, valid until the next failing call on that thread).
//! - No panic crosses the boundary: every entry point runs under `catch_unwind` and turns a panic
//!   into [`S1kitStatus::Panic`].
//! - Outputs go to caller-owned buffers whose lengths the caller passes; nothing is allocated per
//!   step. Inputs must not be mutated during a call. A batch is not thread-safe: call it from one
//!   thread at a time.
//!
//! ## Why `unsafe`
//! This is the FFI crate: its entry points read C pointers and lengths (`slice::from_raw_parts`) and
//! own heap handles through raw pointers (`Box::into_raw` / `Box::from_raw`). Each `unsafe` block
//! relies only on the caller contract written in the function's `# Safety` section; every pointer
//! is checked for null before use. The core crate itself stays `#![forbid(unsafe_code)]`.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use s1kit_core::budget::{BudgetBatch, BudgetSpec, CompiledSpec, MaskOut, RowState};
use s1kit_core::Error;

/// Result of every fallible call. On anything but `S1KIT_STATUS_OK`, `s1kit_last_error()` says why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S1kitStatus {
    /// Success.
    Ok = 0,
    /// The spec is inconsistent (the message names the field and the fix).
    InvalidSpec = 1,
    /// Wrong lengths, a slot outside the batch, a null pointer with a non-zero length, ...
    InvalidArgument = 2,
    /// The slot holds no row: insert one first.
    EmptySlot = 3,
    /// `rollback` asked for more tokens than the row keeps (raise `max_rollback`).
    RollbackTooDeep = 4,
    /// A required pointer was null.
    NullPointer = 5,
    /// A bug inside s1kit: the call panicked and was stopped at the boundary. Please report it.
    Panic = 6,
}

/// A validated, compiled budget spec (opaque). Immutable; share one between many rows.
pub struct S1kitSpec {
    inner: Arc<CompiledSpec>,
}

/// Slot-indexed budget-forcing state for a batch of rows (opaque).
pub struct S1kitBatch {
    inner: BudgetBatch,
}

/// A list of token sequences as flat arrays: sequence `i` is the next `lens[i]` ids of `ids`.
/// `ids` holds `sum(lens)` ids; both pointers may be null when `count == 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct S1kitSeqs {
    /// All ids, sequence after sequence.
    pub ids: *const u32,
    /// Length of each sequence (`count` entries, each > 0).
    pub lens: *const u32,
    /// Number of sequences.
    pub count: usize,
}

/// Everything a spec holds, as flat arrays (see `s1kit_core::budget::BudgetSpec` for meanings).
/// Pointers may be null when their length is 0. Optional caps are "none" when negative.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct S1kitSpecDesc {
    /// Vocabulary size: every id must be below it.
    pub vocab_size: u32,
    /// Spellings that open thinking (none: rows start in the thinking phase).
    pub think_start: S1kitSeqs,
    /// Spellings that close thinking (at least one).
    pub think_end: S1kitSeqs,
    /// End-of-sequence ids.
    pub eos: *const u32,
    /// Entries of `eos`.
    pub eos_len: usize,
    /// Forced at the cap: the end delimiter followed by e.g. "Final Answer:".
    pub answer_prefix: *const u32,
    /// Entries of `answer_prefix`.
    pub answer_prefix_len: usize,
    /// Texts forced in place of an early end of thinking, cycled ("Wait").
    pub extensions: S1kitSeqs,
    /// Thinking-token cap; negative: no cap.
    pub max_thinking_tokens: i64,
    /// An end of thinking before this many thinking tokens is suppressed.
    pub min_thinking_tokens: u32,
    /// The first `num_extensions` attempts to end thinking are suppressed.
    pub num_extensions: u32,
    /// After the cap, let the line finish for at most this many tokens.
    pub grace_tokens: u32,
    /// Ids of tokens that end a line (used with `grace_tokens > 0`).
    pub newline_tokens: *const u32,
    /// Entries of `newline_tokens`.
    pub newline_tokens_len: usize,
    /// Answer-token cap; negative: no cap.
    pub max_answer_tokens: i64,
    /// Spellings that end the answer, besides EOS.
    pub answer_stop: S1kitSeqs,
}

/// One row's counters, as reported by `s1kit_batch_row_state`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct S1kitRowState {
    /// `S1KIT_PHASE_*`: 0 pre-think, 1 thinking, 2 answer, 3 done, 4 error, 5 empty slot.
    pub phase: u8,
    /// Why the row is in the error phase: 0 none, 1 token out of vocabulary, 2 mask not honoured.
    pub error: u8,
    /// Whether the thinking cap cut the thinking span.
    pub capped: bool,
    /// Whether a forced sequence is being emitted.
    pub forcing: bool,
    /// Tokens emitted in the thinking span (forced ones included).
    pub thinking_tokens: u32,
    /// Tokens emitted in the answer span (the forced answer prefix included).
    pub answer_tokens: u32,
    /// Tokens forced in place of the sampled one.
    pub forced_tokens: u32,
    /// Attempts to end thinking replaced by an extension.
    pub extensions_used: u32,
}

/// Phase values of `S1kitRowState::phase` (equal to the Rust and Python `Phase`).
pub const S1KIT_PHASE_PRE_THINK: u8 = 0;
/// Inside the thinking span.
pub const S1KIT_PHASE_THINKING: u8 = 1;
/// In the answer.
pub const S1KIT_PHASE_ANSWER: u8 = 2;
/// Finished (absorbing).
pub const S1KIT_PHASE_DONE: u8 = 3;
/// Fed an invalid token (absorbing).
pub const S1KIT_PHASE_ERROR: u8 = 4;
/// An empty slot.
pub const S1KIT_PHASE_EMPTY: u8 = 5;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: String) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The one place core errors become status codes (every variant named).
fn status_of(e: &Error) -> S1kitStatus {
    match e {
        Error::InvalidSpec(_) => S1kitStatus::InvalidSpec,
        Error::InvalidArgument(_) => S1kitStatus::InvalidArgument,
        Error::EmptySlot(_) => S1kitStatus::EmptySlot,
        Error::RollbackTooDeep { .. } => S1kitStatus::RollbackTooDeep,
    }
}

/// A failure detected at the boundary, before the core is called.
struct Fail(S1kitStatus, String);

type CallResult = Result<(), Fail>;

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(status_of(&e), e.to_string())
    }
}

/// Run `f`, turning errors and panics into a status and a last-error message.
fn guard(f: impl FnOnce() -> CallResult) -> S1kitStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => S1kitStatus::Ok,
        Ok(Err(Fail(status, msg))) => {
            set_error(msg);
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(format!(
                "internal error (panic) in s1kit: {what}; please report it"
            ));
            S1kitStatus::Panic
        }
    }
}

fn null(what: &str) -> Fail {
    Fail(
        S1kitStatus::NullPointer,
        format!("{what} is a null pointer: pass a valid pointer"),
    )
}

/// A slice from a C pointer and length; null is allowed only for length 0.
///
/// # Safety
/// When `len > 0`, `p` must point to `len` readable, initialized values that stay valid and
/// unmutated for `'a`.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-null, and the caller guarantees `len` valid values (function contract).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A mutable slice from a C pointer and length; null is allowed only for length 0.
///
/// # Safety
/// When `len > 0`, `p` must point to `len` writable values not aliased by any other argument.
unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, what: &str) -> Result<&'a mut [T], Fail> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-null, and the caller guarantees `len` writable, unaliased values.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// # Safety
/// `s.ids` and `s.lens` must satisfy the [`S1kitSeqs`] contract.
unsafe fn seqs(s: &S1kitSeqs, what: &str) -> Result<Vec<Vec<u32>>, Fail> {
    // SAFETY: forwarded caller contract.
    let lens = unsafe { slice(s.lens, s.count, what)? };
    let total = lens
        .iter()
        .try_fold(0usize, |acc, &l| acc.checked_add(l as usize));
    let Some(total) = total else {
        return Err(Fail(
            S1kitStatus::InvalidArgument,
            format!("{what}: the lengths overflow"),
        ));
    };
    // SAFETY: forwarded caller contract (`ids` holds `sum(lens)` ids).
    let ids = unsafe { slice(s.ids, total, what)? };
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &l in lens {
        out.push(ids[at..at + l as usize].to_vec());
        at += l as usize;
    }
    Ok(out)
}

fn cap(v: i64, what: &str) -> Result<Option<u32>, Fail> {
    if v < 0 {
        return Ok(None);
    }
    u32::try_from(v).map(Some).map_err(|_| {
        Fail(
            S1kitStatus::InvalidArgument,
            format!(
                "{what} is {v}, above the largest supported cap {}",
                u32::MAX
            ),
        )
    })
}

/// The message of the last failing call on this thread ("" if none). Owned by s1kit: valid until
/// the next failing call on the same thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn s1kit_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0" (static string).
#[no_mangle]
pub extern "C" fn s1kit_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Validate and compile a spec; on success `*out` holds a new handle (free it with `s1kit_spec_free`).
///
/// # Safety
/// `desc` must point to a valid [`S1kitSpecDesc`] whose arrays hold the lengths it states; `out`
/// must point to writable storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn s1kit_spec_new(
    desc: *const S1kitSpecDesc,
    out: *mut *mut S1kitSpec,
) -> S1kitStatus {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: checked non-null; the caller guarantees a valid descriptor.
        let d = unsafe { desc.as_ref() }.ok_or_else(|| null("desc"))?;
        // SAFETY: every array below is described by `d`, per the caller contract.
        let spec = unsafe {
            BudgetSpec {
                vocab_size: d.vocab_size,
                think_start: seqs(&d.think_start, "think_start")?,
                think_end: seqs(&d.think_end, "think_end")?,
                eos: slice(d.eos, d.eos_len, "eos")?.to_vec(),
                answer_prefix: slice(d.answer_prefix, d.answer_prefix_len, "answer_prefix")?
                    .to_vec(),
                extensions: seqs(&d.extensions, "extensions")?,
                max_thinking_tokens: cap(d.max_thinking_tokens, "max_thinking_tokens")?,
                min_thinking_tokens: d.min_thinking_tokens,
                num_extensions: d.num_extensions,
                grace_tokens: d.grace_tokens,
                newline_tokens: slice(d.newline_tokens, d.newline_tokens_len, "newline_tokens")?
                    .to_vec(),
                max_answer_tokens: cap(d.max_answer_tokens, "max_answer_tokens")?,
                answer_stop: seqs(&d.answer_stop, "answer_stop")?,
            }
        };
        let compiled = spec.compile()?;
        let handle = Box::into_raw(Box::new(S1kitSpec {
            inner: Arc::new(compiled),
        }));
        // SAFETY: `out` is non-null and writable (caller contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Release a spec handle (null is a no-op). Rows that use it keep their own reference.
///
/// # Safety
/// `spec` must be null or a handle from `s1kit_spec_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn s1kit_spec_free(spec: *mut S1kitSpec) {
    if !spec.is_null() {
        // SAFETY: the handle came from `Box::into_raw` and is freed once (caller contract).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(spec) })));
    }
}

/// The most token ids a mask step bans for one row of `spec` (columns of `ban` it needs).
///
/// # Safety
/// `spec` must be a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn s1kit_spec_ban_width(
    spec: *const S1kitSpec,
    out: *mut usize,
) -> S1kitStatus {
    guard(|| {
        // SAFETY: live handle or null (caller contract).
        let s = unsafe { spec.as_ref() }.ok_or_else(|| null("spec"))?;
        // SAFETY: writable or null (caller contract).
        let o = unsafe { out.as_mut() }.ok_or_else(|| null("out"))?;
        *o = s.inner.ban_width();
        Ok(())
    })
}

/// A batch of `capacity` empty slots keeping `max_rollback` states per row for rollback.
/// `capacity` must be in `1..=2**24` and `max_rollback` at most `2**16`
/// (`S1KIT_STATUS_INVALID_ARGUMENT` otherwise, also when the slots cannot be allocated).
///
/// # Safety
/// `out` must point to writable storage for one pointer.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_new(
    capacity: usize,
    max_rollback: usize,
    out: *mut *mut S1kitBatch,
) -> S1kitStatus {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // Fallible: a capacity beyond the core's bound or the allocator's reach is a status, not
        // an abort of the host process.
        let inner = BudgetBatch::try_new(capacity, max_rollback)?;
        let handle = Box::into_raw(Box::new(S1kitBatch { inner }));
        // SAFETY: non-null and writable (caller contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Release a batch handle (null is a no-op).
///
/// # Safety
/// `batch` must be null or a handle from `s1kit_batch_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_free(batch: *mut S1kitBatch) {
    if !batch.is_null() {
        // SAFETY: the handle came from `Box::into_raw` and is freed once (caller contract).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(batch) })));
    }
}

/// # Safety
/// `batch` must be null or a live handle used by no other thread during the call.
unsafe fn batch_mut<'a>(batch: *mut S1kitBatch) -> Result<&'a mut BudgetBatch, Fail> {
    // SAFETY: forwarded caller contract.
    unsafe { batch.as_mut() }
        .map(|b| &mut b.inner)
        .ok_or_else(|| null("batch"))
}

/// Run `f` on a live batch under the guard.
///
/// # Safety
/// As [`batch_mut`].
unsafe fn with_batch(
    batch: *mut S1kitBatch,
    f: impl FnOnce(&mut BudgetBatch) -> CallResult,
) -> S1kitStatus {
    // SAFETY: forwarded caller contract.
    guard(|| f(unsafe { batch_mut(batch)? }))
}

/// Number of slots of the batch.
///
/// # Safety
/// `batch` must be a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_capacity(
    batch: *const S1kitBatch,
    out: *mut usize,
) -> S1kitStatus {
    guard(|| {
        // SAFETY: live handle or null; writable or null (caller contract).
        let b = unsafe { batch.as_ref() }.ok_or_else(|| null("batch"))?;
        let o = unsafe { out.as_mut() }.ok_or_else(|| null("out"))?;
        *o = b.inner.capacity();
        Ok(())
    })
}

/// Columns the `ban` output of `s1kit_batch_mask` needs for the rows now in the batch.
///
/// # Safety
/// `batch` must be a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_ban_width(
    batch: *const S1kitBatch,
    out: *mut usize,
) -> S1kitStatus {
    guard(|| {
        // SAFETY: live handle or null; writable or null (caller contract).
        let b = unsafe { batch.as_ref() }.ok_or_else(|| null("batch"))?;
        let o = unsafe { out.as_mut() }.ok_or_else(|| null("out"))?;
        *o = b.inner.ban_width();
        Ok(())
    })
}

/// Put a fresh row with `spec` into the empty `slot` (an occupied slot is
/// `S1KIT_STATUS_INVALID_ARGUMENT`: remove it first). The row keeps its own reference to the spec:
/// the caller may free `spec` afterwards.
///
/// # Safety
/// `batch` and `spec` must be live handles.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_insert(
    batch: *mut S1kitBatch,
    slot: usize,
    spec: *const S1kitSpec,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe {
        with_batch(batch, |b| {
            let s = spec.as_ref().ok_or_else(|| null("spec"))?;
            Ok(b.insert(slot, s.inner.clone())?)
        })
    }
}

/// Empty the occupied `slot` (an empty slot is `S1KIT_STATUS_EMPTY_SLOT`).
///
/// # Safety
/// `batch` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_remove(batch: *mut S1kitBatch, slot: usize) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe { with_batch(batch, |b| Ok(b.remove(slot)?)) }
}

/// Exchange slots `a` and `b` (either may be empty).
///
/// # Safety
/// `batch` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_swap(
    batch: *mut S1kitBatch,
    a: usize,
    b: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe { with_batch(batch, |x| Ok(x.swap(a, b)?)) }
}

/// Move the row in `from` to `to` (replacing it), leaving `from` empty.
///
/// # Safety
/// `batch` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_move(
    batch: *mut S1kitBatch,
    from: usize,
    to: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe { with_batch(batch, |b| Ok(b.move_row(from, to)?)) }
}

/// Return the row in `slot` to its initial state (same spec, no prompt).
///
/// # Safety
/// `batch` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_reset(batch: *mut S1kitBatch, slot: usize) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe { with_batch(batch, |b| Ok(b.reset(slot)?)) }
}

/// Undo the last `k` tokens of `slot` exactly (e.g. rejected speculative tokens).
///
/// # Safety
/// `batch` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_rollback(
    batch: *mut S1kitBatch,
    slot: usize,
    k: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe { with_batch(batch, |b| Ok(b.rollback(slot, k)?)) }
}

/// Feed the row's prompt (`len` ids) so its phase follows it (e.g. a template that opens thinking).
///
/// # Safety
/// `batch` must be a live handle; `prompt` must hold `len` ids (may be null when `len == 0`).
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_process_prompt(
    batch: *mut S1kitBatch,
    slot: usize,
    prompt: *const u32,
    len: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe {
        with_batch(batch, |b| {
            let p = slice(prompt, len, "prompt")?;
            Ok(b.process_prompt(slot, p)?)
        })
    }
}

/// Override mode, one decode step for `n` entries. Entry `i` belongs to slot `rows[i]`, or to slot
/// `i` when `rows` is null (then `n` must equal the capacity). `sampled[i]` is the model's token;
/// `out[i]` receives the token that must replace it, or -1. Idle and empty rows get -1.
///
/// # Safety
/// `batch` must be a live handle; `sampled` and `out` must hold `n` values; `rows` null or `n`.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_step(
    batch: *mut S1kitBatch,
    sampled: *const i64,
    rows: *const u32,
    n: usize,
    out: *mut i32,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe {
        with_batch(batch, |b| {
            let s = slice(sampled, n, "sampled")?;
            let r = if rows.is_null() {
                None
            } else {
                Some(slice(rows, n, "rows")?)
            };
            let o = slice_mut(out, n, "out")?;
            Ok(b.step_rows(s, r, o)?)
        })
    }
}

/// Mask mode, before sampling, for `n` entries (rows as in `s1kit_batch_step`). Per entry:
/// `force[i]`: the token the row must emit (give it all the probability), or -1; otherwise
/// `redirect[i]`: -1 (leave the logits alone), or the token that replaces an attempt to end
/// thinking, with the attempts listed in `ban[i*width .. i*width+width]` (padded with -1). For a
/// redirect entry the engine sets the banned logits to -inf and gives their probability to
/// `redirect[i]` (greedy: `logit[r] = max(logit[r], logit[banned...])`; sampling at temperature T:
/// `logit[r] = T * logsumexp(logit[r] / T, logit[banned...] / T)`), and decides the flag it passes
/// to `s1kit_batch_advance`: whether an emission of `redirect[i]` stands for the end attempt
/// (greedy: the best banned logit is higher than `logit[r]`, or equal with a lower id; sampling: a
/// uniform draw below the banned tokens' share of the pooled probability). `width` must be at least
/// `s1kit_batch_ban_width`. Reads state only.
///
/// # Safety
/// `batch` must be a live handle; `force`, `redirect` hold `n` values, `ban` holds `n * width`;
/// `rows` null or `n`.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_mask(
    batch: *mut S1kitBatch,
    rows: *const u32,
    n: usize,
    force: *mut i32,
    redirect: *mut i32,
    ban: *mut i32,
    width: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe {
        with_batch(batch, |b| {
            let r = if rows.is_null() {
                None
            } else {
                Some(slice(rows, n, "rows")?)
            };
            let cells = n.checked_mul(width).ok_or_else(|| {
                Fail(
                    S1kitStatus::InvalidArgument,
                    "n * width overflows".to_string(),
                )
            })?;
            let out = MaskOut {
                force: slice_mut(force, n, "force")?,
                redirect: slice_mut(redirect, n, "redirect")?,
                ban: slice_mut(ban, cells, "ban")?,
                width,
            };
            Ok(b.mask(r, n, out)?)
        })
    }
}

/// Mask mode, after sampling: the `n` tokens the engine emitted under the last mask, and per entry
/// `redirected[i]` (1: if the entry emitted its redirect token, that emission stands for the attempt
/// to end thinking, which is counted and the rest of the extension or answer prefix forced; 0: it is
/// the model's own token). Ignored for other tokens and entries without a redirect. `redirected`
/// may be null: 0 for every entry.
///
/// # Safety
/// `batch` must be a live handle; `emitted` holds `n` values; `redirected` null or `n`; `rows`
/// null or `n`.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_advance(
    batch: *mut S1kitBatch,
    emitted: *const i64,
    redirected: *const u8,
    rows: *const u32,
    n: usize,
) -> S1kitStatus {
    // SAFETY: caller contract.
    unsafe {
        with_batch(batch, |b| {
            let e = slice(emitted, n, "emitted")?;
            let f = if redirected.is_null() {
                None
            } else {
                Some(slice(redirected, n, "redirected")?)
            };
            let r = if rows.is_null() {
                None
            } else {
                Some(slice(rows, n, "rows")?)
            };
            Ok(b.advance(e, f, r)?)
        })
    }
}

/// The counters of `slot` (an empty slot reports phase 5 and zeros).
///
/// # Safety
/// `batch` must be a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn s1kit_batch_row_state(
    batch: *const S1kitBatch,
    slot: usize,
    out: *mut S1kitRowState,
) -> S1kitStatus {
    guard(|| {
        // SAFETY: live handle or null; writable or null (caller contract).
        let b = unsafe { batch.as_ref() }.ok_or_else(|| null("batch"))?;
        let o = unsafe { out.as_mut() }.ok_or_else(|| null("out"))?;
        if slot >= b.inner.capacity() {
            return Err(Fail(
                S1kitStatus::InvalidArgument,
                format!(
                    "slot {slot} is outside the batch of capacity {}",
                    b.inner.capacity()
                ),
            ));
        }
        let s = b.inner.state(slot).copied().unwrap_or_else(RowState::empty);
        *o = S1kitRowState {
            phase: s.phase as u8,
            error: s.error as u8,
            capped: s.capped,
            forcing: !matches!(s.forcing, s1kit_core::budget::Forcing::None),
            thinking_tokens: s.thinking_tokens,
            answer_tokens: s.answer_tokens,
            forced_tokens: s.forced_tokens,
            extensions_used: s.extensions_used,
        };
        Ok(())
    })
}

#[cfg(test)]
mod tests;
