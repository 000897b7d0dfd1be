//! One row's budget-forcing state and its transition per emitted token.
//!
//! [`RowState`] is `Copy` and small, so history for `rollback` is a ring of whole states and a
//! rollback restores one exactly. Each step first asks [`RowState::plan`] what the row requires
//! before looking at the model's token, then applies the token with [`RowState::step`] (override
//! mode) or [`RowState::advance`] (mask mode).

use super::matcher::{KIND_ANSWER_STOP, KIND_THINK_END, KIND_THINK_START};
use super::spec::CompiledSpec;

/// Where a row is. The numeric values are part of the Python and C interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Before the thinking span opens (only when `think_start` spellings are given).
    PreThink = 0,
    /// Inside the thinking span: the budget applies.
    Thinking = 1,
    /// After the end of thinking: the answer.
    Answer = 2,
    /// Finished: EOS, an answer stop sequence or the answer cap. Absorbing.
    Done = 3,
    /// The caller fed an invalid token (see [`RowError`]). Absorbing.
    Error = 4,
    /// An empty batch slot (reported by the batch, never held by a row).
    Empty = 5,
}

/// Why a row is in [`Phase::Error`]. The numeric values are part of the Python and C interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RowError {
    /// No error.
    None = 0,
    /// The sampled token was negative or not below `vocab_size`.
    TokenOutOfVocab = 1,
    /// In mask mode, the emitted token was not the forced one, or was a banned one.
    MaskNotHonoured = 2,
}

/// Which forced sequence a row is emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forcing {
    /// Nothing forced.
    None,
    /// `extensions[i]`.
    Extension(u32),
    /// `answer_prefix`.
    AnswerPrefix,
}

/// What a row requires before the model's token for this step is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Done, error: the step does nothing to this row.
    Idle,
    /// The row must emit this token, whatever was sampled.
    Force(u32),
    /// The model's token is used, unless it is an end attempt the row must redirect.
    Free(Redirect),
}

/// How a free row treats an attempt to end thinking this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// No redirection: every token is taken as sampled.
    None,
    /// Ending is not allowed yet: an end delimiter or EOS is replaced by the next extension.
    ToExtension,
    /// Ending is allowed, but an EOS in the thinking span is replaced by the answer prefix.
    EosToAnswer,
}

/// What mask mode asks of a row this step ([`RowState::mask_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskPlan {
    /// Nothing: whatever the stack samples stands.
    Nothing,
    /// The row must emit this token.
    Force(u32),
    /// The row is done (`error: false`) or in its error phase: emit this EOS id, so that the
    /// stack's own EOS check ends the request.
    Stop { eos: u32, error: bool },
    /// Ban the end attempts ([`RowState::for_each_ban`] with `redirect`) and give their
    /// probability to `target`.
    Redirect { target: u32, redirect: Redirect },
}

/// The full state of one row. Counters are in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowState {
    /// Current phase.
    pub phase: Phase,
    /// Set when `phase == Error`.
    pub error: RowError,
    /// Delimiter automaton state.
    pub matcher_state: u32,
    /// Tokens emitted in the thinking span (forced extension tokens included).
    pub thinking_tokens: u32,
    /// Tokens emitted in the answer span (the forced answer prefix included).
    pub answer_tokens: u32,
    /// Tokens that the row forced in place of the sampled one.
    pub forced_tokens: u32,
    /// Attempts to end thinking that were replaced by an extension.
    pub extensions_used: u32,
    /// Whether the thinking cap cut the thinking span.
    pub capped: bool,
    /// Thinking tokens emitted after the cap was reached, while finishing the line.
    pub grace_used: u32,
    /// A newline was emitted after the cap was reached: force now.
    pub line_closed: bool,
    /// The forced sequence being emitted.
    pub forcing: Forcing,
    /// Position of the next token in that sequence.
    pub forcing_pos: u32,
}

impl RowState {
    /// The state of a fresh row before any prompt token.
    pub fn initial(c: &CompiledSpec) -> Self {
        let phase = if c.spec().think_start.is_empty() {
            Phase::Thinking
        } else {
            Phase::PreThink
        };
        RowState {
            phase,
            ..Self::empty()
        }
    }

    /// The zeroed state reported for an empty batch slot.
    pub fn empty() -> Self {
        RowState {
            phase: Phase::Empty,
            error: RowError::None,
            matcher_state: 0,
            thinking_tokens: 0,
            answer_tokens: 0,
            forced_tokens: 0,
            extensions_used: 0,
            capped: false,
            grace_used: 0,
            line_closed: false,
            forcing: Forcing::None,
            forcing_pos: 0,
        }
    }

    /// Feed prompt tokens: move the automaton and the phase, count nothing.
    pub fn process_prompt(&mut self, c: &CompiledSpec, prompt: &[u32]) {
        for &t in prompt {
            self.matcher_state = c.matcher().next(self.matcher_state, t);
            let kinds = c.matcher().kinds(self.matcher_state);
            match self.phase {
                Phase::PreThink if kinds & KIND_THINK_START != 0 => self.phase = Phase::Thinking,
                Phase::Thinking if kinds & KIND_THINK_END != 0 => self.phase = Phase::Answer,
                _ => {}
            }
        }
        self.settle_answer(c);
    }

    /// A row in `Answer` with nothing forced and its answer cap already reached is done (so that
    /// `max_answer_tokens = 0` lets no answer token through after a natural end of thinking).
    fn settle_answer(&mut self, c: &CompiledSpec) {
        if self.phase == Phase::Answer
            && self.forcing == Forcing::None
            && c.spec()
                .max_answer_tokens
                .is_some_and(|m| self.answer_tokens >= m)
        {
            self.phase = Phase::Done;
        }
    }

    fn forced_seq<'a>(&self, c: &'a CompiledSpec) -> &'a [u32] {
        match self.forcing {
            Forcing::None => &[],
            Forcing::Extension(i) => &c.spec().extensions[i as usize],
            Forcing::AnswerPrefix => &c.spec().answer_prefix,
        }
    }

    fn pending_forced(&self, c: &CompiledSpec) -> Option<u32> {
        self.forced_seq(c).get(self.forcing_pos as usize).copied()
    }

    fn cap_reached(&self, c: &CompiledSpec) -> bool {
        let s = c.spec();
        match s.max_thinking_tokens {
            Some(max) if self.thinking_tokens >= max => {
                s.grace_tokens == 0 || self.line_closed || self.grace_used >= s.grace_tokens
            }
            _ => false,
        }
    }

    fn may_end(&self, c: &CompiledSpec) -> bool {
        let s = c.spec();
        self.thinking_tokens >= s.min_thinking_tokens && self.extensions_used >= s.num_extensions
    }

    fn next_extension(&self, c: &CompiledSpec) -> u32 {
        self.extensions_used % c.spec().extensions.len() as u32
    }

    /// Whether a step can change this row (it is not done, in error or empty). Equivalent to
    /// `plan(c) != Plan::Idle`, without computing the plan.
    #[inline]
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Done | Phase::Error | Phase::Empty)
    }

    /// What this row requires this step, before the model's token is known.
    pub fn plan(&self, c: &CompiledSpec) -> Plan {
        match self.phase {
            Phase::Done | Phase::Error | Phase::Empty => Plan::Idle,
            _ if self.forcing != Forcing::None => Plan::Force(
                self.pending_forced(c)
                    .expect("a forcing row has a pending token"),
            ),
            Phase::Thinking if self.cap_reached(c) => {
                Plan::Force(c.spec().answer_prefix[c.answer_overlap(self.matcher_state)])
            }
            Phase::Thinking if !self.may_end(c) => Plan::Free(Redirect::ToExtension),
            Phase::Thinking if !c.spec().answer_prefix.is_empty() && !c.eos().is_empty() => {
                Plan::Free(Redirect::EosToAnswer)
            }
            _ => Plan::Free(Redirect::None),
        }
    }

    /// Whether token `t` would trigger `redirect` in the current state.
    pub fn triggers(&self, c: &CompiledSpec, redirect: Redirect, t: u32) -> bool {
        match redirect {
            Redirect::None => false,
            Redirect::ToExtension => {
                c.is_eos(t)
                    || c.matcher().kinds(c.matcher().next(self.matcher_state, t)) & KIND_THINK_END
                        != 0
            }
            Redirect::EosToAnswer => c.is_eos(t),
        }
    }

    /// Call `f` with every token that would trigger `redirect` now (the end attempts mask mode
    /// bans): the EOS ids first, then the tokens that would complete an end delimiter, each once.
    pub fn for_each_ban(&self, c: &CompiledSpec, redirect: Redirect, mut f: impl FnMut(u32)) {
        for &t in c.eos() {
            if self.triggers(c, redirect, t) {
                f(t);
            }
        }
        for &t in c.matcher().end_tokens(self.matcher_state) {
            if !c.is_eos(t) && self.triggers(c, redirect, t) {
                f(t);
            }
        }
    }

    /// What mask mode asks of this row this step: [`Self::plan`] with the redirect target resolved,
    /// and, with `stop_finished`, a done or error row stopped with its spec's first EOS id (a spec
    /// without EOS ids leaves it alone).
    pub fn mask_plan(&self, c: &CompiledSpec, stop_finished: bool) -> MaskPlan {
        match self.plan(c) {
            Plan::Idle => match c.eos().first() {
                Some(&eos) if stop_finished && matches!(self.phase, Phase::Done | Phase::Error) => {
                    MaskPlan::Stop {
                        eos,
                        error: self.phase == Phase::Error,
                    }
                }
                _ => MaskPlan::Nothing,
            },
            Plan::Force(t) => MaskPlan::Force(t),
            Plan::Free(redirect) => {
                self.redirect_target(c, redirect)
                    .map_or(MaskPlan::Nothing, |target| MaskPlan::Redirect {
                        target,
                        redirect,
                    })
            }
        }
    }

    /// The first token that `redirect` would force instead.
    pub fn redirect_target(&self, c: &CompiledSpec, redirect: Redirect) -> Option<u32> {
        match redirect {
            Redirect::None => None,
            Redirect::ToExtension => Some(c.spec().extensions[self.next_extension(c) as usize][0]),
            Redirect::EosToAnswer => {
                Some(c.spec().answer_prefix[c.answer_overlap(self.matcher_state)])
            }
        }
    }

    fn fail(&mut self, e: RowError) {
        self.phase = Phase::Error;
        self.error = e;
    }

    /// Override mode: the model sampled `sampled`; returns the token to emit instead, or `None`
    /// when the sampled token stands (or the row is idle, or it failed on an invalid token).
    pub fn step(&mut self, c: &CompiledSpec, sampled: i64) -> Option<u32> {
        match self.plan(c) {
            Plan::Idle => None,
            Plan::Force(t) => {
                if self.forcing == Forcing::None {
                    self.begin_answer(c, true);
                }
                self.emit(c, t, true);
                Some(t)
            }
            Plan::Free(redirect) => {
                if sampled < 0 || sampled >= i64::from(c.spec().vocab_size) {
                    self.fail(RowError::TokenOutOfVocab);
                    return None;
                }
                let t = sampled as u32;
                if self.triggers(c, redirect, t) {
                    let forced = self.begin_redirect(c, redirect);
                    self.emit(c, forced, true);
                    Some(forced)
                } else {
                    self.emit(c, t, false);
                    None
                }
            }
        }
    }

    /// Mask mode: the stack emitted `emitted` after applying this row's mask. `redirected`: an
    /// emission of the row's redirect token at this step stands for the model's attempt to end (it
    /// is then counted as one and the rest of the extension or answer prefix is forced); `false`:
    /// it is the model's own token, taken as sampled. Ignored unless the row's plan is a
    /// redirecting [`Plan::Free`] and `emitted` is its redirect token (see
    /// [`super::BudgetBatch::mask`]).
    pub fn advance(&mut self, c: &CompiledSpec, emitted: i64, redirected: bool) {
        match self.plan(c) {
            Plan::Idle => {}
            Plan::Force(t) => {
                if emitted != i64::from(t) {
                    self.fail(RowError::MaskNotHonoured);
                    return;
                }
                if self.forcing == Forcing::None {
                    self.begin_answer(c, true);
                }
                self.emit(c, t, true);
            }
            Plan::Free(redirect) => {
                if emitted < 0 || emitted >= i64::from(c.spec().vocab_size) {
                    self.fail(RowError::TokenOutOfVocab);
                    return;
                }
                let t = emitted as u32;
                match self.redirect_target(c, redirect) {
                    Some(target) if redirected && t == target => {
                        let forced = self.begin_redirect(c, redirect);
                        self.emit(c, forced, true);
                    }
                    _ if self.triggers(c, redirect, t) => self.fail(RowError::MaskNotHonoured),
                    _ => self.emit(c, t, false),
                }
            }
        }
    }

    /// Start forcing the answer prefix, continuing the longest proper prefix of it that the stream
    /// already ends with (e.g. the model's own "\n" before the cap): that part is not repeated.
    fn begin_answer(&mut self, c: &CompiledSpec, capped: bool) {
        self.phase = Phase::Answer;
        self.capped = capped;
        self.forcing = Forcing::AnswerPrefix;
        self.forcing_pos = c.answer_overlap(self.matcher_state) as u32;
    }

    /// Start the forced sequence that replaces an end attempt; returns its first token.
    fn begin_redirect(&mut self, c: &CompiledSpec, redirect: Redirect) -> u32 {
        match redirect {
            Redirect::ToExtension => {
                self.forcing = Forcing::Extension(self.next_extension(c));
                self.extensions_used += 1;
                self.forcing_pos = 0;
            }
            Redirect::EosToAnswer => self.begin_answer(c, false),
            Redirect::None => unreachable!("a row without redirection never triggers one"),
        }
        self.pending_forced(c)
            .expect("forced sequences are non-empty")
    }

    /// Emit `t` in the current phase: count it, move the automaton, apply natural transitions.
    fn emit(&mut self, c: &CompiledSpec, t: u32, forced: bool) {
        let s = c.spec();
        self.matcher_state = c.matcher().next(self.matcher_state, t);
        let kinds = c.matcher().kinds(self.matcher_state);
        if forced {
            self.forced_tokens += 1;
            self.forcing_pos += 1;
            if self.forcing_pos as usize == self.forced_seq(c).len() {
                self.forcing = Forcing::None;
                self.forcing_pos = 0;
            }
        }
        match self.phase {
            Phase::PreThink => {
                if c.is_eos(t) {
                    self.phase = Phase::Done;
                } else if kinds & KIND_THINK_START != 0 {
                    self.phase = Phase::Thinking;
                }
            }
            Phase::Thinking => {
                if let Some(max) = s.max_thinking_tokens {
                    if self.thinking_tokens >= max {
                        self.grace_used += 1;
                        self.line_closed |= c.is_newline(t);
                    }
                }
                self.thinking_tokens += 1;
                // Forced tokens never end thinking; a sampled end reaching here was allowed.
                if !forced && (kinds & KIND_THINK_END != 0 || c.is_eos(t)) {
                    self.phase = if c.is_eos(t) {
                        Phase::Done
                    } else {
                        Phase::Answer
                    };
                    self.settle_answer(c);
                }
            }
            Phase::Answer => {
                self.answer_tokens += 1;
                let stop = !forced && (c.is_eos(t) || kinds & KIND_ANSWER_STOP != 0);
                let full = self.forcing == Forcing::None
                    && s.max_answer_tokens.is_some_and(|m| self.answer_tokens >= m);
                if stop || full {
                    self.phase = Phase::Done;
                }
            }
            Phase::Done | Phase::Error | Phase::Empty => unreachable!("idle rows emit nothing"),
        }
    }
}
