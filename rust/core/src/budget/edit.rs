//! Mask mode applied to logits in host memory, in one call per decode step.
//!
//! [`BudgetBatch::mask`] says per entry what to force, ban and redirect; a stack then edits its
//! logits and reports the redirect flags to [`BudgetBatch::advance`]. Where the logits live in host
//! memory (CPU builds of vLLM and SGLang), [`BudgetBatch::mask_logits`] does the whole step in one
//! call: it reads each row's plan, edits only the cells involved, and writes the flags. The cells,
//! comparisons and values are those of the torch edit that serves device logits
//! (`s1kit.budget.adapters.masking.apply_mask`):
//!
//! - **forced** entry: [`ForcedWrite::Cell`] sets the forced token's cell to the given value (e.g.
//!   `1e9`) and leaves the row alone; [`ForcedWrite::Fill`] gives every other cell `-inf` and the
//!   forced one 0.
//! - **redirect** entry, greedy (temperature 0): the flag is whether some banned cell outranks the
//!   redirect token's (higher, or equal with a lower token id, as argmax breaks ties); the redirect
//!   cell gets the largest of its own and the banned cells (NaN propagates, as `torch.amax`), the
//!   banned cells `-inf`.
//! - **redirect** entry, sampled at temperature `T > 0` with the uniform draw `u`: with `z = x / T`
//!   (`T` at least `1e-6`), `b = logsumexp(z_banned)` and `a = logaddexp(z_redirect, b)`, the flag
//!   is `u < exp(b - a)` (the end attempts' share of the pooled probability) and the redirect cell
//!   gets `T * a`, computed in `f64`.
//! - with `stop_finished`, a row that is done or in its error phase is **stopped**: its first EOS
//!   id is forced as above (a spec without EOS ids is left alone), so that the engine's own EOS
//!   check ends the request.
//!
//! Entries without a redirect get flag 0. Every argument is checked before the first write: on an
//! error nothing is edited.

use super::batch::BudgetBatch;
use super::row::MaskPlan;
use crate::error::{Error, Result};

/// A float type that host logits may have.
pub trait Logit: Copy {
    /// The value as `f64` (exact for `f32` and `f64`).
    fn get(self) -> f64;
    /// The nearest value of this type to `x` (overflow gives an infinity).
    fn put(x: f64) -> Self;
}

impl Logit for f32 {
    fn get(self) -> f64 {
        f64::from(self)
    }
    fn put(x: f64) -> Self {
        // Rounding to the nearest f32 is the intent (the torch edit stores its f32 result).
        x as f32
    }
}

impl Logit for f64 {
    fn get(self) -> f64 {
        self
    }
    fn put(x: f64) -> Self {
        x
    }
}

/// How a forced entry is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ForcedWrite {
    /// Every other cell of the row `-inf`, the forced cell 0: exact whatever runs afterwards.
    Fill,
    /// Only the forced cell, set to this value (see `masking.FORCED_LOGIT` for when that is exact).
    Cell(f64),
}

/// Options of [`BudgetBatch::mask_logits`].
#[derive(Debug, Clone, Copy)]
pub struct EditOptions<'a> {
    /// Force the first EOS id of rows that are done or in their error phase.
    pub stop_finished: bool,
    /// How forced entries (and stopped rows) are written.
    pub forced: ForcedWrite,
    /// Per entry, the temperature of a sampled row (> 0) or 0 for a greedy one; `None`: all greedy.
    pub temperature: Option<&'a [f64]>,
    /// Per entry, a uniform draw in `[0, 1)`, read for sampled entries with a redirect only.
    pub uniform: Option<&'a [f64]>,
}

/// What one [`BudgetBatch::mask_logits`] call did, counted in entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EditSummary {
    /// Entries whose row had a token to force (stopped rows not included).
    pub forced: usize,
    /// Entries with a redirect.
    pub redirected: usize,
    /// Entries whose flag is 1 (an emission of the redirect token stands for the end attempt).
    pub flagged: usize,
    /// Rows stopped with EOS because they are done.
    pub stopped_done: usize,
    /// Rows stopped with EOS because they are in their error phase.
    pub stopped_error: usize,
}

/// The smallest temperature the sampled edit divides by (as the torch edit clamps it).
const MIN_TEMPERATURE: f64 = 1e-6;

impl BudgetBatch {
    /// Mask mode on host logits (see the module docs). Entry `i` is slot `slots[i]` (`None`: slot
    /// `i`) and edits row `logit_rows[i]` of `logits`, a row-major `(rows, vocab)` array; `flags`
    /// receives one redirect flag per entry, to pass to [`Self::advance`] with the emitted tokens.
    /// Reads the rows' state only.
    pub fn mask_logits<F: Logit>(
        &self,
        slots: Option<&[u32]>,
        logit_rows: &[u32],
        logits: &mut [F],
        vocab: usize,
        options: &EditOptions<'_>,
        flags: &mut [u8],
    ) -> Result<EditSummary> {
        let n = logit_rows.len();
        self.entries(n, slots)?;
        self.check_edit(slots, logit_rows, logits.len(), vocab, options, flags.len())?;
        let mut summary = EditSummary::default();
        let mut banned: Vec<u32> = Vec::new();
        for (i, &lr) in logit_rows.iter().enumerate() {
            flags[i] = 0;
            let slot = slots.map_or(i, |s| s[i] as usize);
            let Some((spec, state)) = self.row(slot) else {
                continue;
            };
            let row = &mut logits[lr as usize * vocab..(lr as usize + 1) * vocab];
            match state.mask_plan(spec, options.stop_finished) {
                MaskPlan::Nothing => {}
                MaskPlan::Force(t) => {
                    write_forced(row, t as usize, options.forced);
                    summary.forced += 1;
                }
                MaskPlan::Stop { eos, error } => {
                    write_forced(row, eos as usize, options.forced);
                    if error {
                        summary.stopped_error += 1;
                    } else {
                        summary.stopped_done += 1;
                    }
                }
                MaskPlan::Redirect { target, redirect } => {
                    banned.clear();
                    state.for_each_ban(spec, redirect, |t| banned.push(t));
                    let temperature = options.temperature.map_or(0.0, |t| t[i]);
                    let uniform = options.uniform.map_or(0.0, |u| u[i]);
                    let flag = redirect_edit(row, target, &banned, temperature, uniform);
                    flags[i] = u8::from(flag);
                    summary.redirected += 1;
                    summary.flagged += usize::from(flag);
                }
            }
        }
        Ok(summary)
    }

    fn check_edit(
        &self,
        slots: Option<&[u32]>,
        logit_rows: &[u32],
        len: usize,
        vocab: usize,
        options: &EditOptions<'_>,
        flags: usize,
    ) -> Result<()> {
        let n = logit_rows.len();
        if vocab == 0 || len % vocab != 0 {
            return Err(Error::InvalidArgument(format!(
                "logits hold {len} values, not whole rows of vocab={vocab}: pass the (rows, vocab) array"
            )));
        }
        let rows = len / vocab;
        for (name, got) in [
            ("flags", Some(flags)),
            ("temperature", options.temperature.map(<[f64]>::len)),
            ("uniform", options.uniform.map(<[f64]>::len)),
        ] {
            if got.is_some_and(|g| g != n) {
                return Err(Error::InvalidArgument(format!(
                    "{name} has {} entries, logit_rows has {n}: give one per entry",
                    got.unwrap_or(0)
                )));
            }
        }
        for (i, &lr) in logit_rows.iter().enumerate() {
            if lr as usize >= rows {
                return Err(Error::InvalidArgument(format!(
                    "logit_rows holds row {lr}, but the logits have {rows} rows"
                )));
            }
            let slot = slots.map_or(i, |s| s[i] as usize);
            if let Some((spec, _)) = self.row(slot) {
                let v = spec.spec().vocab_size as usize;
                if v > vocab {
                    return Err(Error::InvalidArgument(format!(
                        "slot {slot}'s spec has vocab_size {v} but the logits have {vocab} columns: \
                         build the spec for this model's vocabulary"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn write_forced<F: Logit>(row: &mut [F], token: usize, how: ForcedWrite) {
    match how {
        ForcedWrite::Fill => {
            row.fill(F::put(f64::NEG_INFINITY));
            row[token] = F::put(0.0);
        }
        ForcedWrite::Cell(v) => row[token] = F::put(v),
    }
}

/// The redirect edit of one row; returns the flag (see the module docs).
fn redirect_edit<F: Logit>(
    row: &mut [F],
    target: u32,
    banned: &[u32],
    temperature: f64,
    uniform: f64,
) -> bool {
    if banned.is_empty() {
        return false; // nothing to pool: the row is left as it is
    }
    let x_t = row[target as usize].get();
    let (flag, value) = if temperature > 0.0 {
        let tau = temperature.max(MIN_TEMPERATURE);
        let z_t = x_t / tau;
        let b = logsumexp(banned.iter().map(|&t| row[t as usize].get() / tau));
        let a = logaddexp(z_t, b);
        (uniform < (b - a).exp(), tau * a)
    } else {
        let mut flag = false;
        let mut best = x_t;
        for &t in banned {
            let x_b = row[t as usize].get();
            flag |= x_b > x_t || (x_b == x_t && t < target);
            if !best.is_nan() && (x_b.is_nan() || x_b > best) {
                best = x_b; // a NaN, once taken, stays (as torch.amax propagates it)
            }
        }
        (flag, best)
    };
    for &t in banned {
        row[t as usize] = F::put(f64::NEG_INFINITY);
    }
    row[target as usize] = F::put(value);
    flag
}

fn logsumexp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m; // every value -inf (or none), one +inf, or every value NaN
    }
    m + xs.map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn logaddexp(a: f64, b: f64) -> f64 {
    logsumexp([a, b].into_iter())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::budget::BudgetSpec;

    fn batch(min_thinking: u32) -> BudgetBatch {
        let mut spec = BudgetSpec::new(8);
        spec.think_end = vec![vec![5]];
        spec.eos = vec![7];
        spec.answer_prefix = vec![6];
        spec.extensions = vec![vec![3, 4]];
        spec.num_extensions = 1;
        spec.min_thinking_tokens = min_thinking;
        let mut b = BudgetBatch::new(2, 0);
        b.insert(0, Arc::new(spec.compile().unwrap())).unwrap();
        b
    }

    const GREEDY: EditOptions<'static> = EditOptions {
        stop_finished: true,
        forced: ForcedWrite::Cell(1e9),
        temperature: None,
        uniform: None,
    };

    #[test]
    fn greedy_redirect_takes_the_best_end_attempt() {
        let b = batch(0);
        let mut logits = vec![0.0_f32; 16];
        logits[5] = 2.0; // the end delimiter outranks the extension's first token
        logits[3] = 1.0;
        let mut flags = [9u8];
        let s = b
            .mask_logits(Some(&[0]), &[0], &mut logits, 8, &GREEDY, &mut flags)
            .unwrap();
        assert_eq!((s.redirected, s.flagged), (1, 1));
        assert_eq!(flags, [1]);
        assert_eq!(logits[3], 2.0);
        assert_eq!(logits[5], f32::NEG_INFINITY);
        assert_eq!(logits[7], f32::NEG_INFINITY);
        assert!(
            logits[8..].iter().all(|&x| x == 0.0),
            "other rows untouched"
        );
    }

    #[test]
    fn a_bad_argument_edits_nothing() {
        let b = batch(0);
        let mut logits = vec![1.0_f64; 16];
        let mut flags = [0u8];
        let err = b.mask_logits(Some(&[0]), &[2], &mut logits, 8, &GREEDY, &mut flags);
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("row 2")));
        let err = b.mask_logits(Some(&[0]), &[0], &mut logits, 4, &GREEDY, &mut flags);
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("vocab_size 8")));
        assert!(logits.iter().all(|&x| x == 1.0));
    }
}
