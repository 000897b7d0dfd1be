//! A batch's specs and row states as flat `i32` tables, for steppers written outside Rust.
//!
//! A tensor mirror of [`RowState::step`] (e.g. on a GPU, inside a CUDA graph) cannot call into Rust
//! per step. [`BatchTables::build`] compiles the specs of a batch into fixed-shape tables once per
//! batch change; [`StateArrays`] moves every row's state out of and back into the batch, so such a
//! stepper starts from the Rust core's state and hands it back. The semantics stay defined by
//! [`RowState::step`]; these tables only re-encode what it reads.
//!
//! ## Layout (row-major, `S` specs, `T` automaton states in all, `Q` forced sequences)
//! - Specs are the distinct specs of the occupied slots, in order of first appearance;
//!   `row_spec[slot]` indexes them (`-1`: empty slot).
//! - Automaton: spec `s` owns global states `state_base[s] .. state_base[s] + num_states[s]`
//!   (its local state `i` is global `state_base[s] + i`). `alphabet[s, k]` (`S x K`, padded with -1)
//!   lists the sorted ids that label some pattern edge of spec `s`. `next[g, k]` (`T x (K + 1)`)
//!   is the global state after feeding `alphabet[s, k]` in global state `g`; column `K` is the
//!   transition for every id outside the alphabet, which is always the spec's root (checked by a
//!   test; a token in no pattern matches no prefix of one), and padding columns repeat it.
//!   `kinds[g]` holds the pattern kind bits of [`super::matcher`], and `answer_overlap[g]` the
//!   number of leading answer-prefix tokens the stream ends with there
//!   ([`CompiledSpec::answer_overlap`]: forcing the answer prefix starts at that position).
//! - Forced sequences: row `q` of `seqs` (`Q x L`, padded with -1) has `seq_len[q]` ids. Spec `s`
//!   has extensions `ext_seq_base[s] .. + num_ext_seqs[s]` and its answer prefix at `answer_seq[s]`
//!   (`-1`: empty answer prefix).
//! - Sets: `eos` (`S x E`) and `newline` (`S x N`), sorted, padded with -1; `newline` is empty
//!   unless `grace_tokens > 0`, exactly as [`CompiledSpec::is_newline`] reads it.
//! - Budgets: `max_thinking_tokens` and `max_answer_tokens` are -1 for "no cap"; values above
//!   `i32::MAX` are clamped to it (no row emits 2^31 tokens).

use std::sync::Arc;

use super::batch::BudgetBatch;
use super::row::{Forcing, Phase, RowError, RowState};
use super::spec::CompiledSpec;
use crate::error::{Error, Result};

/// The specs of one batch as flat tables; see the module documentation for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTables {
    /// Per slot: index of its spec, or -1 for an empty slot.
    pub row_spec: Vec<i32>,
    /// Per spec: vocabulary size.
    pub vocab_size: Vec<i32>,
    /// Per spec: thinking cap, or -1.
    pub max_thinking_tokens: Vec<i32>,
    /// Per spec: minimum thinking tokens before an end is allowed.
    pub min_thinking_tokens: Vec<i32>,
    /// Per spec: end attempts to suppress.
    pub num_extensions: Vec<i32>,
    /// Per spec: grace tokens after the cap.
    pub grace_tokens: Vec<i32>,
    /// Per spec: answer cap, or -1.
    pub max_answer_tokens: Vec<i32>,
    /// Per spec: phase of a fresh row ([`Phase::PreThink`] or [`Phase::Thinking`]).
    pub initial_phase: Vec<i32>,
    /// Per spec: 1 when an allowed EOS in thinking is replaced by the answer prefix.
    pub eos_to_answer: Vec<i32>,
    /// Per spec: global id of its automaton's root.
    pub state_base: Vec<i32>,
    /// Per spec: number of automaton states.
    pub num_states: Vec<i32>,
    /// Per spec: sequence index of `extensions[0]`.
    pub ext_seq_base: Vec<i32>,
    /// Per spec: number of extensions.
    pub num_ext_seqs: Vec<i32>,
    /// Per spec: sequence index of the answer prefix, or -1 when it is empty.
    pub answer_seq: Vec<i32>,
    /// `K`: columns of `alphabet` (the largest alphabet of a spec).
    pub alphabet_width: usize,
    /// `S x K`: sorted pattern ids per spec, padded with -1.
    pub alphabet: Vec<i32>,
    /// `T x (K + 1)`: global next state per alphabet column; column `K` for any other id.
    pub next: Vec<i32>,
    /// `T`: pattern kind bits per global state.
    pub kinds: Vec<i32>,
    /// `T`: per global state, the position in the answer prefix where forcing it starts.
    pub answer_overlap: Vec<i32>,
    /// `L`: columns of `seqs`.
    pub seq_width: usize,
    /// `Q x L`: forced sequences, padded with -1.
    pub seqs: Vec<i32>,
    /// `Q`: length of each forced sequence.
    pub seq_len: Vec<i32>,
    /// `E`: columns of `eos`.
    pub eos_width: usize,
    /// `S x E`: sorted EOS ids per spec, padded with -1.
    pub eos: Vec<i32>,
    /// `N`: columns of `newline`.
    pub newline_width: usize,
    /// `S x N`: sorted newline ids per spec (empty without grace), padded with -1.
    pub newline: Vec<i32>,
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn ids_i32(ids: &[u32]) -> impl Iterator<Item = i32> + '_ {
    // Ids are below vocab_size (u32) and real vocabularies are far below 2^31.
    ids.iter().map(|&t| clamp_i32(t))
}

/// Append `rows` as a `width`-column block padded with -1.
fn pad_rows(out: &mut Vec<i32>, rows: &[Vec<u32>], width: usize) {
    for r in rows {
        out.extend(ids_i32(r));
        out.resize(out.len() + width - r.len(), -1);
    }
}

/// The distinct specs of the occupied slots, in order of first appearance, and each slot's index.
fn distinct_specs(batch: &BudgetBatch) -> (Vec<Arc<CompiledSpec>>, Vec<i32>) {
    let mut specs: Vec<Arc<CompiledSpec>> = Vec::new();
    let mut row_spec = Vec::with_capacity(batch.capacity());
    for slot in 0..batch.capacity() {
        let idx = match batch.spec(slot) {
            None => -1,
            Some(c) => {
                let found = specs
                    .iter()
                    .position(|s| Arc::ptr_eq(s, c) || s.spec() == c.spec());
                let i = found.unwrap_or_else(|| {
                    specs.push(c.clone());
                    specs.len() - 1
                });
                i as i32
            }
        };
        row_spec.push(idx);
    }
    (specs, row_spec)
}

impl BatchTables {
    /// Compile the specs of the rows now in `batch`.
    pub fn build(batch: &BudgetBatch) -> Self {
        let (specs, row_spec) = distinct_specs(batch);
        let alphabets: Vec<Vec<u32>> = specs.iter().map(|c| c.matcher().alphabet()).collect();
        let k = alphabets.iter().map(Vec::len).max().unwrap_or(0);
        let eos_sets: Vec<Vec<u32>> = specs.iter().map(|c| c.eos().to_vec()).collect();
        let newline_sets: Vec<Vec<u32>> = specs
            .iter()
            .map(|c| {
                let s = c.spec();
                let mut v = if s.grace_tokens > 0 {
                    s.newline_tokens.clone()
                } else {
                    Vec::new()
                };
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        let mut t = BatchTables {
            row_spec,
            vocab_size: Vec::new(),
            max_thinking_tokens: Vec::new(),
            min_thinking_tokens: Vec::new(),
            num_extensions: Vec::new(),
            grace_tokens: Vec::new(),
            max_answer_tokens: Vec::new(),
            initial_phase: Vec::new(),
            eos_to_answer: Vec::new(),
            state_base: Vec::new(),
            num_states: Vec::new(),
            ext_seq_base: Vec::new(),
            num_ext_seqs: Vec::new(),
            answer_seq: Vec::new(),
            alphabet_width: k,
            alphabet: Vec::new(),
            next: Vec::new(),
            kinds: Vec::new(),
            answer_overlap: Vec::new(),
            seq_width: 0,
            seqs: Vec::new(),
            seq_len: Vec::new(),
            eos_width: eos_sets.iter().map(Vec::len).max().unwrap_or(0),
            eos: Vec::new(),
            newline_width: newline_sets.iter().map(Vec::len).max().unwrap_or(0),
            newline: Vec::new(),
        };
        let mut seqs: Vec<Vec<u32>> = Vec::new();
        let mut base = 0i32;
        for (c, alpha) in specs.iter().zip(&alphabets) {
            let s = c.spec();
            let m = c.matcher();
            t.vocab_size.push(clamp_i32(s.vocab_size));
            t.max_thinking_tokens
                .push(s.max_thinking_tokens.map_or(-1, clamp_i32));
            t.min_thinking_tokens.push(clamp_i32(s.min_thinking_tokens));
            t.num_extensions.push(clamp_i32(s.num_extensions));
            t.grace_tokens.push(clamp_i32(s.grace_tokens));
            t.max_answer_tokens
                .push(s.max_answer_tokens.map_or(-1, clamp_i32));
            t.initial_phase.push(RowState::initial(c).phase as i32);
            t.eos_to_answer.push(i32::from(
                !s.answer_prefix.is_empty() && !c.eos().is_empty(),
            ));
            t.state_base.push(base);
            t.num_states.push(m.num_states() as i32);
            t.ext_seq_base.push(seqs.len() as i32);
            t.num_ext_seqs.push(s.extensions.len() as i32);
            seqs.extend(s.extensions.iter().cloned());
            if s.answer_prefix.is_empty() {
                t.answer_seq.push(-1);
            } else {
                t.answer_seq.push(seqs.len() as i32);
                seqs.push(s.answer_prefix.clone());
            }
            t.alphabet.extend(ids_i32(alpha));
            t.alphabet.resize(t.alphabet.len() + k - alpha.len(), -1);
            for state in 0..m.num_states() as u32 {
                // u32::MAX is no valid id (ids are below vocab_size), so it stands for "any other".
                let other = base + m.next(state, u32::MAX) as i32;
                t.next
                    .extend(alpha.iter().map(|&a| base + m.next(state, a) as i32));
                t.next.resize(t.next.len() + k - alpha.len() + 1, other);
                t.kinds.push(i32::from(m.kinds(state)));
                t.answer_overlap.push(c.answer_overlap(state) as i32);
            }
            base += m.num_states() as i32;
        }
        t.seq_width = seqs.iter().map(Vec::len).max().unwrap_or(0);
        t.seq_len = seqs.iter().map(|q| q.len() as i32).collect();
        pad_rows(&mut t.seqs, &seqs, t.seq_width);
        pad_rows(&mut t.eos, &eos_sets, t.eos_width);
        pad_rows(&mut t.newline, &newline_sets, t.newline_width);
        t
    }

    /// Number of distinct specs (`S`).
    pub fn num_specs(&self) -> usize {
        self.vocab_size.len()
    }

    /// Number of automaton states over all specs (`T`).
    pub fn total_states(&self) -> usize {
        self.kinds.len()
    }
}

/// `forcing_kind` value: nothing forced.
pub const FORCING_NONE: i32 = 0;
/// `forcing_kind` value: extension `forcing_index` is being forced.
pub const FORCING_EXTENSION: i32 = 1;
/// `forcing_kind` value: the answer prefix is being forced.
pub const FORCING_ANSWER_PREFIX: i32 = 2;

/// Every slot's [`RowState`] as one `i32` array per field (empty slots: [`RowState::empty`]).
///
/// `matcher_state` is the row's local automaton state (add `state_base` of its spec for the global
/// id in [`BatchTables`]); `forcing_kind` is one of the `FORCING_*` constants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateArrays {
    pub phase: Vec<i32>,
    pub error: Vec<i32>,
    pub matcher_state: Vec<i32>,
    pub thinking_tokens: Vec<i32>,
    pub answer_tokens: Vec<i32>,
    pub forced_tokens: Vec<i32>,
    pub extensions_used: Vec<i32>,
    pub capped: Vec<i32>,
    pub grace_used: Vec<i32>,
    pub line_closed: Vec<i32>,
    pub forcing_kind: Vec<i32>,
    pub forcing_index: Vec<i32>,
    pub forcing_pos: Vec<i32>,
}

/// Field names of [`StateArrays`], in declaration order (the binding's dictionary keys).
pub const STATE_FIELDS: [&str; 13] = [
    "phase",
    "error",
    "matcher_state",
    "thinking_tokens",
    "answer_tokens",
    "forced_tokens",
    "extensions_used",
    "capped",
    "grace_used",
    "line_closed",
    "forcing_kind",
    "forcing_index",
    "forcing_pos",
];

fn field_i32(name: &str, slot: usize, v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "slot {slot}: {name} = {v} does not fit in int32 and cannot be exported"
        ))
    })
}

fn field_u32(name: &str, slot: usize, v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!(
            "slot {slot}: {name} = {v} is negative; counters and states are >= 0"
        ))
    })
}

fn flag(name: &str, slot: usize, v: i32) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::InvalidArgument(format!(
            "slot {slot}: {name} = {v}, expected 0 or 1"
        ))),
    }
}

impl StateArrays {
    /// Field references in [`STATE_FIELDS`] order.
    pub fn fields(&self) -> [&Vec<i32>; 13] {
        [
            &self.phase,
            &self.error,
            &self.matcher_state,
            &self.thinking_tokens,
            &self.answer_tokens,
            &self.forced_tokens,
            &self.extensions_used,
            &self.capped,
            &self.grace_used,
            &self.line_closed,
            &self.forcing_kind,
            &self.forcing_index,
            &self.forcing_pos,
        ]
    }

    /// Mutable field references in [`STATE_FIELDS`] order.
    pub fn fields_mut(&mut self) -> [&mut Vec<i32>; 13] {
        [
            &mut self.phase,
            &mut self.error,
            &mut self.matcher_state,
            &mut self.thinking_tokens,
            &mut self.answer_tokens,
            &mut self.forced_tokens,
            &mut self.extensions_used,
            &mut self.capped,
            &mut self.grace_used,
            &mut self.line_closed,
            &mut self.forcing_kind,
            &mut self.forcing_index,
            &mut self.forcing_pos,
        ]
    }

    /// Every slot's state.
    pub fn export(batch: &BudgetBatch) -> Result<Self> {
        let mut a = StateArrays::default();
        for slot in 0..batch.capacity() {
            let s = batch.state(slot).copied().unwrap_or_else(RowState::empty);
            let (kind, index) = match s.forcing {
                Forcing::None => (FORCING_NONE, 0),
                Forcing::Extension(i) => (FORCING_EXTENSION, field_i32("forcing_index", slot, i)?),
                Forcing::AnswerPrefix => (FORCING_ANSWER_PREFIX, 0),
            };
            a.phase.push(s.phase as i32);
            a.error.push(s.error as i32);
            a.matcher_state
                .push(field_i32("matcher_state", slot, s.matcher_state)?);
            a.thinking_tokens
                .push(field_i32("thinking_tokens", slot, s.thinking_tokens)?);
            a.answer_tokens
                .push(field_i32("answer_tokens", slot, s.answer_tokens)?);
            a.forced_tokens
                .push(field_i32("forced_tokens", slot, s.forced_tokens)?);
            a.extensions_used
                .push(field_i32("extensions_used", slot, s.extensions_used)?);
            a.capped.push(i32::from(s.capped));
            a.grace_used
                .push(field_i32("grace_used", slot, s.grace_used)?);
            a.line_closed.push(i32::from(s.line_closed));
            a.forcing_kind.push(kind);
            a.forcing_index.push(index);
            a.forcing_pos
                .push(field_i32("forcing_pos", slot, s.forcing_pos)?);
        }
        Ok(a)
    }

    /// The state of entry `slot`, checked against `c` so that stepping it can never panic.
    fn row(&self, slot: usize, c: &CompiledSpec) -> Result<RowState> {
        let bad = |msg: String| Err(Error::InvalidArgument(format!("slot {slot}: {msg}")));
        let phase = match self.phase[slot] {
            0 => Phase::PreThink,
            1 => Phase::Thinking,
            2 => Phase::Answer,
            3 => Phase::Done,
            4 => Phase::Error,
            p => {
                return bad(format!(
                "phase {p} is not the phase of an occupied slot (0..=4): the slots changed since the export"
            ))
            }
        };
        let error = match self.error[slot] {
            0 => RowError::None,
            1 => RowError::TokenOutOfVocab,
            2 => RowError::MaskNotHonoured,
            e => return bad(format!("error {e} is not a row error code (0..=2)")),
        };
        let matcher_state = field_u32("matcher_state", slot, self.matcher_state[slot])?;
        if matcher_state as usize >= c.matcher().num_states() {
            return bad(format!(
                "matcher_state {matcher_state} is outside the spec's automaton of {} states: pass local states",
                c.matcher().num_states()
            ));
        }
        let s = c.spec();
        let index = field_u32("forcing_index", slot, self.forcing_index[slot])?;
        let pos = field_u32("forcing_pos", slot, self.forcing_pos[slot])?;
        let (forcing, len) = match self.forcing_kind[slot] {
            FORCING_NONE => (Forcing::None, None),
            FORCING_EXTENSION => match s.extensions.get(index as usize) {
                Some(e) => (Forcing::Extension(index), Some(e.len())),
                None => {
                    return bad(format!(
                        "forcing_index {index} is not an extension of the spec"
                    ))
                }
            },
            FORCING_ANSWER_PREFIX => (Forcing::AnswerPrefix, Some(s.answer_prefix.len())),
            k => return bad(format!("forcing_kind {k} is not 0, 1 or 2")),
        };
        match len {
            None if pos != 0 || index != 0 => {
                return bad("forcing_pos and forcing_index must be 0 when nothing is forced".into())
            }
            Some(n) if pos as usize >= n => {
                return bad(format!(
                    "forcing_pos {pos} is past the end of the forced sequence of length {n}"
                ))
            }
            _ => {}
        }
        Ok(RowState {
            phase,
            error,
            matcher_state,
            thinking_tokens: field_u32("thinking_tokens", slot, self.thinking_tokens[slot])?,
            answer_tokens: field_u32("answer_tokens", slot, self.answer_tokens[slot])?,
            forced_tokens: field_u32("forced_tokens", slot, self.forced_tokens[slot])?,
            extensions_used: field_u32("extensions_used", slot, self.extensions_used[slot])?,
            capped: flag("capped", slot, self.capped[slot])?,
            grace_used: field_u32("grace_used", slot, self.grace_used[slot])?,
            line_closed: flag("line_closed", slot, self.line_closed[slot])?,
            forcing,
            forcing_pos: pos,
        })
    }

    /// Write every occupied slot's state back into `batch` (clearing its rollback history, which
    /// no longer leads to the imported state). Checks everything first and changes nothing on
    /// error: lengths, that empty slots are marked empty and occupied ones not, and that every
    /// state is valid for its slot's spec.
    pub fn import(&self, batch: &mut BudgetBatch) -> Result<()> {
        let n = batch.capacity();
        for (name, f) in STATE_FIELDS.iter().zip(self.fields()) {
            if f.len() != n {
                return Err(Error::InvalidArgument(format!(
                    "{name} has {} entries, the batch has {n} slots: give one entry per slot",
                    f.len()
                )));
            }
        }
        let mut rows = Vec::with_capacity(n);
        for slot in 0..n {
            match batch.spec(slot) {
                None if self.phase[slot] != Phase::Empty as i32 => {
                    return Err(Error::InvalidArgument(format!(
                        "slot {slot} is empty but its imported phase is {}: the slots changed since the export",
                        self.phase[slot]
                    )))
                }
                None => rows.push(None),
                Some(c) => rows.push(Some(self.row(slot, c)?)),
            }
        }
        for (slot, row) in rows.into_iter().enumerate() {
            if let Some(state) = row {
                batch.set_state(slot, state)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::BudgetSpec;

    fn spec(end: Vec<Vec<u32>>, exts: Vec<Vec<u32>>) -> Arc<CompiledSpec> {
        Arc::new(
            BudgetSpec {
                think_end: end,
                think_start: vec![vec![1, 2]],
                eos: vec![9],
                answer_prefix: vec![3, 4],
                extensions: exts,
                max_thinking_tokens: Some(5),
                num_extensions: 1,
                ..BudgetSpec::new(12)
            }
            .compile()
            .unwrap(),
        )
    }

    #[test]
    fn default_column_is_the_root_and_tables_follow_the_matcher() {
        let a = spec(vec![vec![5, 6, 5], vec![6, 5, 7]], vec![vec![8]]);
        let b = spec(vec![vec![7]], vec![vec![8, 8], vec![10]]);
        let mut batch = BudgetBatch::new(4, 0);
        batch.insert(0, b.clone()).unwrap();
        batch.insert(2, a.clone()).unwrap();
        batch.insert(3, b.clone()).unwrap();
        let t = BatchTables::build(&batch);
        assert_eq!(t.row_spec, vec![0, -1, 1, 0]);
        assert_eq!(t.num_specs(), 2);
        let k = t.alphabet_width;
        for (si, c) in [&b, &a].into_iter().enumerate() {
            let m = c.matcher();
            let base = t.state_base[si];
            let alpha = &t.alphabet[si * k..(si + 1) * k];
            for state in 0..m.num_states() as u32 {
                let g = (base as usize + state as usize) * (k + 1);
                // No pattern holds an id outside the alphabet, so it resets to the root.
                assert_eq!(m.next(state, u32::MAX), 0);
                assert_eq!(t.next[g + k], base);
                for tok in 0..12u32 {
                    let col = alpha.iter().position(|&x| x == tok as i32).unwrap_or(k);
                    assert_eq!(t.next[g + col], base + m.next(state, tok) as i32);
                }
            }
        }
        assert_eq!(t.seq_len, vec![2, 1, 2, 1, 2]);
        assert_eq!(t.answer_seq, vec![2, 4]);
    }

    #[test]
    fn export_import_round_trips_and_rejects_stale_arrays() {
        let a = spec(vec![vec![5, 6]], vec![vec![8, 8]]);
        let mut batch = BudgetBatch::new(2, 4);
        batch.insert(1, a).unwrap();
        batch.process_prompt(1, &[1, 2]).unwrap();
        let mut out = [0i32; 2];
        batch.step(&[0, 5], &mut out).unwrap();
        batch.step(&[0, 6], &mut out).unwrap(); // early end: "8 8" is forced
        let s = StateArrays::export(&batch).unwrap();
        assert_eq!(s.forcing_kind[1], FORCING_EXTENSION);
        assert_eq!(s.phase[0], Phase::Empty as i32);
        let mut copy = batch.clone();
        s.import(&mut copy).unwrap();
        assert_eq!(copy.state(1), batch.state(1));
        let mut wrong = s.clone();
        wrong.forcing_pos[1] = 2;
        assert!(wrong.import(&mut copy).is_err());
        let mut wrong = s.clone();
        wrong.phase[0] = 1;
        assert!(wrong.import(&mut copy).is_err());
        assert_eq!(copy.state(1), batch.state(1));
    }
}
