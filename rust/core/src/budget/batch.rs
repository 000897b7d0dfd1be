//! [`BudgetBatch`]: slot-indexed rows, advanced together once per decode step.
//!
//! Slots are stable indices chosen by the caller (the row's position in its decode batch). Every
//! per-step call takes arrays with one entry per slot, or per entry of an explicit `rows` index
//! array, and writes into caller-owned outputs: no allocation per step.

use std::collections::VecDeque;
use std::sync::Arc;

use super::row::{MaskPlan, RowState};
use super::spec::CompiledSpec;
use crate::error::{Error, Result};

/// One occupied slot.
#[derive(Debug, Clone)]
struct Row {
    spec: Arc<CompiledSpec>,
    state: RowState,
    /// The states before the last tokens, newest at the back, at most `max_rollback` of them.
    history: VecDeque<RowState>,
}

/// Budget-forcing state for a batch of rows with possibly different specs.
#[derive(Debug, Clone)]
pub struct BudgetBatch {
    slots: Vec<Option<Row>>,
    max_rollback: usize,
}

/// Mask-mode outputs for one step, in caller-owned arrays.
pub struct MaskOut<'a> {
    /// Per entry: the token the row must emit, or -1.
    pub force: &'a mut [i32],
    /// Per entry: the token that replaces an end attempt (the redirect), or -1.
    pub redirect: &'a mut [i32],
    /// Row-major `(entries, width)`: token ids to ban, padded with -1.
    pub ban: &'a mut [i32],
    /// Columns of `ban`; at least [`BudgetBatch::ban_width`].
    pub width: usize,
}

/// The most slots a batch may have (16 Mi rows: far beyond any decode batch). Bounding it keeps a
/// mistyped capacity from asking the allocator for terabytes, which aborts the process.
pub const MAX_CAPACITY: usize = 1 << 24;
/// The deepest per-row rollback history a batch may keep (each row reserves it on insert).
pub const MAX_ROLLBACK: usize = 1 << 16;

impl BudgetBatch {
    /// [`Self::new`] for sizes from outside: `capacity` in `1..=MAX_CAPACITY`, `max_rollback` at most
    /// [`MAX_ROLLBACK`], and an allocation failure is an error instead of an abort.
    pub fn try_new(capacity: usize, max_rollback: usize) -> Result<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "capacity={capacity} must be between 1 and {MAX_CAPACITY}"
            )));
        }
        if max_rollback > MAX_ROLLBACK {
            return Err(Error::InvalidArgument(format!(
                "max_rollback={max_rollback} must be at most {MAX_ROLLBACK}"
            )));
        }
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| {
            Error::InvalidArgument(format!(
                "capacity={capacity}: cannot allocate the slots; use a smaller capacity"
            ))
        })?;
        slots.resize(capacity, None);
        Ok(BudgetBatch {
            slots,
            max_rollback,
        })
    }

    /// A batch of `capacity` empty slots; each row keeps its last `max_rollback` states.
    pub fn new(capacity: usize, max_rollback: usize) -> Self {
        BudgetBatch {
            slots: vec![None; capacity],
            max_rollback,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Depth of the per-row history kept for `rollback`.
    pub fn max_rollback(&self) -> usize {
        self.max_rollback
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.slots.len() {
            return Err(Error::InvalidArgument(format!(
                "slot {slot} is outside the batch of capacity {}",
                self.slots.len()
            )));
        }
        Ok(())
    }

    fn row_mut(&mut self, slot: usize) -> Result<&mut Row> {
        self.check_slot(slot)?;
        self.slots[slot].as_mut().ok_or(Error::EmptySlot(slot))
    }

    /// Put a fresh row with `spec` into the empty `slot`. An occupied slot is an error (a silent
    /// replacement would hide a caller's bookkeeping bug): `remove` it first, or `reset` it.
    pub fn insert(&mut self, slot: usize, spec: Arc<CompiledSpec>) -> Result<()> {
        self.check_slot(slot)?;
        if self.slots[slot].is_some() {
            return Err(Error::InvalidArgument(format!(
                "slot {slot} already holds a row: remove it first (or reset it to restart the row)"
            )));
        }
        let state = RowState::initial(&spec);
        self.slots[slot] = Some(Row {
            spec,
            state,
            history: VecDeque::with_capacity(self.max_rollback),
        });
        Ok(())
    }

    /// The first empty slot, if any.
    pub fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Empty the occupied `slot`; an empty slot is [`Error::EmptySlot`].
    pub fn remove(&mut self, slot: usize) -> Result<()> {
        self.check_slot(slot)?;
        if self.slots[slot].take().is_none() {
            return Err(Error::EmptySlot(slot));
        }
        Ok(())
    }

    /// Exchange two slots (either may be empty).
    pub fn swap(&mut self, a: usize, b: usize) -> Result<()> {
        self.check_slot(a)?;
        self.check_slot(b)?;
        self.slots.swap(a, b);
        Ok(())
    }

    /// Move `from` into `to`, leaving `from` empty.
    pub fn move_row(&mut self, from: usize, to: usize) -> Result<()> {
        self.check_slot(from)?;
        self.check_slot(to)?;
        if from != to {
            self.slots[to] = self.slots[from].take();
        }
        Ok(())
    }

    /// Return the row in `slot` to its initial state (same spec, no prompt processed).
    pub fn reset(&mut self, slot: usize) -> Result<()> {
        let row = self.row_mut(slot)?;
        row.state = RowState::initial(&row.spec);
        row.history.clear();
        Ok(())
    }

    /// Feed the row's prompt: derives the initial phase (e.g. thinking opened by the template).
    pub fn process_prompt(&mut self, slot: usize, prompt: &[u32]) -> Result<()> {
        let row = self.row_mut(slot)?;
        if let Some(&t) = prompt.iter().find(|&&t| t >= row.spec.spec().vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "prompt token {t} is outside the vocabulary of size {}",
                row.spec.spec().vocab_size
            )));
        }
        row.state.process_prompt(&row.spec, prompt);
        row.history.clear();
        Ok(())
    }

    /// Undo the last `k` tokens of `slot` exactly (e.g. rejected speculative tokens).
    pub fn rollback(&mut self, slot: usize, k: usize) -> Result<()> {
        let row = self.row_mut(slot)?;
        if k > row.history.len() {
            return Err(Error::RollbackTooDeep {
                requested: k,
                available: row.history.len(),
            });
        }
        if k > 0 {
            let keep = row.history.len() - k;
            row.state = row.history[keep];
            row.history.truncate(keep);
        }
        Ok(())
    }

    /// The row in `slot`, if any.
    pub fn state(&self, slot: usize) -> Option<&RowState> {
        self.slots.get(slot)?.as_ref().map(|r| &r.state)
    }

    /// Replace the state of the row in `slot` and clear its rollback history (which no longer leads
    /// to `state`). The state must be valid for the row's spec: use
    /// [`super::tables::StateArrays::import`], which checks it, to hand back a state stepped
    /// outside Rust.
    pub(crate) fn set_state(&mut self, slot: usize, state: RowState) -> Result<()> {
        let row = self.row_mut(slot)?;
        row.state = state;
        row.history.clear();
        Ok(())
    }

    /// The spec and state of the row in `slot`, if any (`slot` must be inside the batch).
    pub(crate) fn row(&self, slot: usize) -> Option<(&CompiledSpec, &RowState)> {
        self.slots[slot].as_ref().map(|r| (&*r.spec, &r.state))
    }

    /// The spec of the row in `slot`, if any.
    pub fn spec(&self, slot: usize) -> Option<&Arc<CompiledSpec>> {
        self.slots.get(slot)?.as_ref().map(|r| &r.spec)
    }

    /// Columns a mask step's `ban` output needs for the rows now in the batch.
    pub fn ban_width(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|r| r.spec.ban_width())
            .max()
            .unwrap_or(0)
    }

    /// Check a per-step call's entries: `n` of them, one per slot or one per slot in `rows`.
    pub(crate) fn entries(&self, n: usize, rows: Option<&[u32]>) -> Result<()> {
        match rows {
            None if n != self.slots.len() => Err(Error::InvalidArgument(format!(
                "expected one token per slot ({}), got {n}; pass `rows` to step a subset",
                self.slots.len()
            ))),
            Some(r) if r.len() != n => Err(Error::InvalidArgument(format!(
                "rows has {} entries but tokens has {n}: give one slot index per token",
                r.len()
            ))),
            Some(r) => match r.iter().find(|&&s| s as usize >= self.slots.len()) {
                Some(s) => Err(Error::InvalidArgument(format!(
                    "rows holds slot {s}, outside the batch of capacity {}",
                    self.slots.len()
                ))),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn push_history(row: &mut Row, max_rollback: usize) {
        if max_rollback == 0 {
            return;
        }
        if row.history.len() == max_rollback {
            row.history.pop_front();
        }
        row.history.push_back(row.state);
    }

    /// Override mode, one decode step. `sampled[i]` is the model's token for entry `i`; `out[i]`
    /// receives the token that must replace it, or -1. Empty slots, done and error rows get -1.
    pub fn step(&mut self, sampled: &[i64], out: &mut [i32]) -> Result<()> {
        self.step_rows(sampled, None, out)
    }

    /// [`Self::step`] for the slots listed in `rows` (entry `i` belongs to slot `rows[i]`).
    pub fn step_rows(
        &mut self,
        sampled: &[i64],
        rows: Option<&[u32]>,
        out: &mut [i32],
    ) -> Result<()> {
        self.entries(sampled.len(), rows)?;
        if out.len() != sampled.len() {
            return Err(Error::InvalidArgument(format!(
                "out has {} entries, sampled has {}: they must match",
                out.len(),
                sampled.len()
            )));
        }
        let max_rollback = self.max_rollback;
        for (i, (&tok, o)) in sampled.iter().zip(out.iter_mut()).enumerate() {
            let slot = rows.map_or(i, |r| r[i] as usize);
            *o = match &mut self.slots[slot] {
                // Steps fed after the row ended are recorded too, so `rollback` undoes them first.
                Some(row) => {
                    Self::push_history(row, max_rollback);
                    // The array interface writes -1 for "no override" (token ids fit in i32).
                    row.state.step(&row.spec, tok).map_or(-1, |t| t as i32)
                }
                None => -1,
            };
        }
        Ok(())
    }

    /// Mask mode, before sampling: per entry, a token to force, or tokens to ban (the end attempts)
    /// and the redirect token that replaces them. The stack bans them and gives their probability
    /// to the redirect token, and decides whether an emission of the redirect token stands for the
    /// end attempt (greedy: the best banned logit outranks the redirect token's own; sampling: a
    /// draw with the end attempts' share of the pooled probability); it passes that flag to
    /// [`Self::advance`]. Reads state only.
    pub fn mask(&self, rows: Option<&[u32]>, n: usize, out: MaskOut<'_>) -> Result<()> {
        self.mask_stopping(rows, n, out, false).map(|_| ())
    }

    /// [`Self::mask`]; with `stop_finished`, a row that is done or in its error phase gets its
    /// spec's first EOS id as the token to force (none without EOS ids), so that a stack that ends a
    /// request on EOS stops it. Returns how many rows were stopped, `(done, error)`.
    pub fn mask_stopping(
        &self,
        rows: Option<&[u32]>,
        n: usize,
        out: MaskOut<'_>,
        stop_finished: bool,
    ) -> Result<(usize, usize)> {
        self.entries(n, rows)?;
        let need = self.ban_width();
        if out.force.len() != n || out.redirect.len() != n || out.ban.len() != n * out.width {
            return Err(Error::InvalidArgument(format!(
                "mask outputs must be force ({n}), redirect ({n}) and ban ({n}, width); got {}, {}, {}",
                out.force.len(),
                out.redirect.len(),
                out.ban.len()
            )));
        }
        if out.width < need {
            return Err(Error::InvalidArgument(format!(
                "ban has {} columns but the rows need {need}: allocate it with ban_width columns",
                out.width
            )));
        }
        out.ban.fill(-1);
        let mut stopped = (0, 0);
        for i in 0..n {
            let slot = rows.map_or(i, |r| r[i] as usize);
            out.force[i] = -1;
            out.redirect[i] = -1;
            let Some(row) = &self.slots[slot] else {
                continue;
            };
            match row.state.mask_plan(&row.spec, stop_finished) {
                MaskPlan::Nothing => {}
                MaskPlan::Force(t) => out.force[i] = t as i32,
                MaskPlan::Stop { eos, error } => {
                    out.force[i] = eos as i32;
                    if error {
                        stopped.1 += 1;
                    } else {
                        stopped.0 += 1;
                    }
                }
                MaskPlan::Redirect { target, redirect } => {
                    out.redirect[i] = target as i32;
                    let ban = &mut out.ban[i * out.width..(i + 1) * out.width];
                    let mut k = 0;
                    row.state.for_each_ban(&row.spec, redirect, |t| {
                        ban[k] = t as i32;
                        k += 1;
                    });
                }
            }
        }
        Ok(stopped)
    }

    /// Mask mode, after sampling: the tokens the stack emitted under the last [`Self::mask`], and per
    /// entry whether an emission of its redirect token stands for the end attempt
    /// (`redirected[i] != 0`; `None`: for no entry). Entries that emitted anything else, or whose
    /// mask had no redirect, ignore their flag.
    pub fn advance(
        &mut self,
        emitted: &[i64],
        redirected: Option<&[u8]>,
        rows: Option<&[u32]>,
    ) -> Result<()> {
        self.entries(emitted.len(), rows)?;
        if let Some(r) = redirected {
            if r.len() != emitted.len() {
                return Err(Error::InvalidArgument(format!(
                    "redirected has {} entries, emitted has {}: give one flag per emitted token",
                    r.len(),
                    emitted.len()
                )));
            }
        }
        let max_rollback = self.max_rollback;
        for (i, &tok) in emitted.iter().enumerate() {
            let slot = rows.map_or(i, |r| r[i] as usize);
            if let Some(row) = &mut self.slots[slot] {
                // Steps fed after the row ended are recorded too, so `rollback` undoes them first.
                Self::push_history(row, max_rollback);
                let flag = redirected.is_some_and(|r| r[i] != 0);
                row.state.advance(&row.spec, tok, flag);
            }
        }
        Ok(())
    }

    /// Apply `f` to every slot's state (`None` for empty slots), in slot order.
    pub fn for_each_state(&self, mut f: impl FnMut(usize, Option<&RowState>)) {
        for (i, s) in self.slots.iter().enumerate() {
            f(i, s.as_ref().map(|r| &r.state));
        }
    }
}
