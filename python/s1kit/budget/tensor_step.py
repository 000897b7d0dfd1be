"""One override-mode budget step as fixed-shape torch ops: the device mirror of ``row.rs``.

Read it side by side with ``rust/core/src/budget/row.rs``: :class:`RowStates` holds ``RowState``'s
fields under the same names (one tensor of ``B`` slots per field), :class:`SpecParams` the spec values
``row.rs`` reads through ``c.spec()``, and :func:`budget_step_` runs ``RowState::step`` as
:func:`plan` (``RowState::plan``), :func:`redirect` (the ``Free`` arm of ``step``:
``triggers``, ``begin_redirect``, ``fail``, and ``begin_answer`` for a row the cap forces) and
:func:`emit` (``RowState::emit``), every branch a mask over the rows instead of an ``if``. No
``.item()``, no host synchronisation, no data-dependent Python control flow: one step can be part of
a CUDA graph.

Two encodings differ from ``row.rs`` because every spec's tables are stacked into one:
``matcher_state`` is a row of the stacked automaton (the Rust value plus the spec's ``state_base``),
and ``Forcing`` is ``forcing_seq``, a row of the stacked sequence table (-1: ``Forcing::None``).

Shapes: ``B`` slots, ``F`` state fields, ``P`` spec parameters, ``T`` automaton states, ``K`` alphabet
width, ``Q`` forced sequences, ``L`` their width, ``E`` EOS width, ``S`` specs, ``V`` vocabulary
(newline bitmap), ``R`` ring of emitted tokens between two copy-outs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from s1kit.budget.batch import Phase

# Pattern kind bits of the Rust matcher.
KIND_THINK_START, KIND_THINK_END, KIND_ANSWER_STOP = 1, 2, 4
ERROR_TOKEN_OUT_OF_VOCAB = 1
PRE_THINK, THINKING, ANSWER, DONE, ERROR, EMPTY = (int(p) for p in Phase)


class RowStates(NamedTuple):
    """``RowState`` (row.rs) for every slot: the rows of ``state_FB``, in this order (int64, ``(B,)``)."""

    phase: torch.Tensor
    error: torch.Tensor
    matcher_state: torch.Tensor  # a state of the stacked automaton: Rust's plus the spec's state_base
    thinking_tokens: torch.Tensor
    answer_tokens: torch.Tensor
    forced_tokens: torch.Tensor
    extensions_used: torch.Tensor
    capped: torch.Tensor  # 0/1
    grace_used: torch.Tensor
    line_closed: torch.Tensor  # 0/1
    forcing_seq: torch.Tensor  # Rust's `forcing`: a row of the stacked sequence table, -1: None
    forcing_pos: torch.Tensor


class SpecParams(NamedTuple):
    """Each slot's spec values and table offsets: the rows of ``params_PB`` (int64, ``(B,)``)."""

    vocab_size: torch.Tensor
    max_thinking_tokens: torch.Tensor  # -1: no cap
    min_thinking_tokens: torch.Tensor
    num_extensions: torch.Tensor
    grace_tokens: torch.Tensor
    max_answer_tokens: torch.Tensor  # -1: no cap
    eos_to_answer: torch.Tensor  # 1: the spec has an answer prefix and EOS ids (Redirect::EosToAnswer)
    state_base: torch.Tensor  # the spec's first row in the stacked automaton
    ext_seq_base: torch.Tensor  # the spec's extensions[0] in the stacked sequence table
    num_ext_seqs: torch.Tensor  # len(extensions), at least 1 (it is a modulus)
    answer_seq: torch.Tensor  # the spec's answer_prefix in the sequence table (-1: empty slot)
    newline_offset: torch.Tensor  # the spec's row of newline_SV, flattened: spec * V


STATE_FIELDS: tuple[str, ...] = RowStates._fields
PARAM_FIELDS: tuple[str, ...] = SpecParams._fields


class Tables(NamedTuple):
    """The device tables one step reads (all int64 except the newline bitmap)."""

    params_PB: torch.Tensor
    alpha_BK: torch.Tensor
    eos_BE: torch.Tensor
    cols_K: torch.Tensor  # arange(K) - K: turns a one-hot alphabet match into a column offset
    next_flat: torch.Tensor  # (T * (K + 1),)
    kinds_T: torch.Tensor
    overlap_T: torch.Tensor  # where forcing the answer prefix starts in each automaton state
    seqs_flat: torch.Tensor  # (Q * L,)
    seq_len_Q: torch.Tensor
    newline_SV: torch.Tensor  # bool; row s, column t: token t ends a line for spec s


class Plan(NamedTuple):
    """``RowState::plan`` per slot, as masks (``(B,)`` bool)."""

    active: torch.Tensor  # not Plan::Idle
    over_cap: torch.Tensor  # thinking_tokens >= max_thinking_tokens (a cap is set)
    force: torch.Tensor  # Plan::Force: a forced sequence continues, or the cap begins the answer
    begin_answer: torch.Tensor  # Plan::Force by the cap: begin_answer(capped=true) first
    free: torch.Tensor  # Plan::Free
    to_extension: torch.Tensor  # Plan::Free(Redirect::ToExtension)
    eos_to_answer: torch.Tensor  # Plan::Free(Redirect::EosToAnswer)


def next_state(matcher_state_B: torch.Tensor, tok_B: torch.Tensor, t: Tables) -> torch.Tensor:
    """``matcher().next``: the automaton state after feeding ``tok_B`` (a valid id)."""
    k = t.alpha_BK.shape[1]
    col_B = k + ((t.alpha_BK == tok_B[:, None]) * t.cols_K).sum(1)  # K: not in the alphabet
    return t.next_flat[matcher_state_B * (k + 1) + col_B]


def is_eos(tok_B: torch.Tensor, t: Tables) -> torch.Tensor:
    return (t.eos_BE == tok_B[:, None]).any(1)


def over_cap(s: RowStates, p: SpecParams) -> torch.Tensor:
    """``thinking_tokens >= max_thinking_tokens`` for rows with a cap."""
    return (p.max_thinking_tokens >= 0) & (s.thinking_tokens >= p.max_thinking_tokens)


def plan(s: RowStates, p: SpecParams) -> Plan:
    """``RowState::plan``: what each row requires before the sampled token is known."""
    active = s.phase <= ANSWER  # PreThink, Thinking, Answer; Done, Error, Empty are idle
    forcing = s.forcing_seq >= 0
    thinking = s.phase == THINKING
    grace_over = (p.grace_tokens == 0) | (s.line_closed != 0) | (s.grace_used >= p.grace_tokens)
    over = over_cap(s, p)
    cap_reached = thinking & over & grace_over
    force = active & (forcing | cap_reached)
    free = active & ~force
    may_end = (s.thinking_tokens >= p.min_thinking_tokens) & (s.extensions_used >= p.num_extensions)
    return Plan(
        active=active,
        over_cap=over,
        force=force,
        begin_answer=force & ~forcing,
        free=free,
        to_extension=free & thinking & ~may_end,
        eos_to_answer=free & thinking & may_end & (p.eos_to_answer != 0),
    )


class Redirected(NamedTuple):
    """The state after the ``Free`` arm of ``RowState::step`` and ``begin_answer``, before ``emit``."""

    states: RowStates
    sampled_B: torch.Tensor  # the sampled token where valid, else 0 (a safe index)
    forced: torch.Tensor  # the row emits its forced sequence's next token
    out_of_vocab: torch.Tensor  # a free row sampled an invalid id: it fails, emits nothing


def redirect(s: RowStates, p: SpecParams, t: Tables, pl: Plan, tok_B: torch.Tensor) -> Redirected:
    """Validate the sampled token (``fail``), apply ``triggers``/``begin_redirect`` to free rows and
    ``begin_answer`` to rows the cap forces."""
    valid = (tok_B >= 0) & (tok_B < p.vocab_size)
    out_of_vocab = pl.free & ~valid
    sampled = torch.where(valid, tok_B, 0)
    eos = is_eos(sampled, t)
    ends = eos | ((t.kinds_T[next_state(s.matcher_state, sampled, t)] & KIND_THINK_END) != 0)
    to_ext = pl.to_extension & valid & ends  # triggers(ToExtension)
    eos_answer = pl.eos_to_answer & valid & eos  # triggers(EosToAnswer)
    to_answer = pl.begin_answer | eos_answer  # begin_answer(capped = from the cap)
    next_extension = p.ext_seq_base + s.extensions_used % p.num_ext_seqs
    forcing_seq = torch.where(to_ext, next_extension, torch.where(to_answer, p.answer_seq, s.forcing_seq))
    # The answer prefix continues the part of it the stream already ends with.
    overlap = t.overlap_T[s.matcher_state]
    forcing_pos = torch.where(to_ext, 0, torch.where(to_answer, overlap, s.forcing_pos))
    states = s._replace(
        phase=torch.where(to_answer, ANSWER, s.phase),
        extensions_used=s.extensions_used + to_ext,
        capped=torch.where(to_answer, pl.begin_answer.long(), s.capped),
        forcing_seq=forcing_seq,
        forcing_pos=forcing_pos,
    )
    return Redirected(states, sampled, pl.force | to_ext | eos_answer, out_of_vocab)


def emit(
    s: RowStates,
    p: SpecParams,
    t: Tables,
    pl: Plan,
    token_B: torch.Tensor,
    forced: torch.Tensor,
    emits: torch.Tensor,
) -> RowStates:
    """``RowState::emit`` for the rows in ``emits``: count ``token_B``, move the automaton, end the
    forced sequence when it is complete, apply the phase's natural transitions (``pl``: the plan of
    this step, whose ``over_cap`` still holds: thinking tokens are counted here)."""
    matcher_state = torch.where(emits, next_state(s.matcher_state, token_B, t), s.matcher_state)
    kinds = t.kinds_T[matcher_state]
    eos = is_eos(token_B, t)
    forcing_pos = s.forcing_pos + forced
    complete = forced & (forcing_pos == t.seq_len_Q[s.forcing_seq.clamp(min=0)])
    pre_think = emits & (s.phase == PRE_THINK)
    thinking = emits & (s.phase == THINKING)
    answer = emits & (s.phase == ANSWER)
    grace = thinking & pl.over_cap
    newline = t.newline_SV.view(-1)[p.newline_offset + token_B.clamp(max=t.newline_SV.shape[1] - 1)]
    # Forced tokens never end thinking; a sampled end reaching here was allowed.
    end_thinking = thinking & ~forced & (((kinds & KIND_THINK_END) != 0) | eos)
    answer_tokens = s.answer_tokens + answer
    stop = answer & ~forced & (eos | ((kinds & KIND_ANSWER_STOP) != 0))
    forcing_seq = torch.where(complete, -1, s.forcing_seq)
    full = answer & (forcing_seq < 0) & (p.max_answer_tokens >= 0) & (answer_tokens >= p.max_answer_tokens)
    # settle_answer: a natural end of thinking with an answer cap of 0 lets no answer token through.
    done = (pre_think & eos) | (end_thinking & (eos | (p.max_answer_tokens == 0))) | stop | full
    phase = torch.where(done, DONE, s.phase)
    phase = torch.where(pre_think & ~eos & ((kinds & KIND_THINK_START) != 0), THINKING, phase)
    phase = torch.where(end_thinking & ~eos & (p.max_answer_tokens != 0), ANSWER, phase)
    return RowStates(
        phase=phase,
        error=s.error,
        matcher_state=matcher_state,
        thinking_tokens=s.thinking_tokens + thinking,
        answer_tokens=answer_tokens,
        forced_tokens=s.forced_tokens + forced,
        extensions_used=s.extensions_used,
        capped=s.capped,
        grace_used=s.grace_used + grace,
        line_closed=s.line_closed | (grace & newline).long(),
        forcing_seq=forcing_seq,
        forcing_pos=torch.where(complete, 0, forcing_pos),
    )


def budget_step_(
    state_FB: torch.Tensor,
    t: Tables,
    tokens_B: torch.Tensor,
    override_B: torch.Tensor,
    done_B: torch.Tensor,
    ring_RB: torch.Tensor,
    count_1: torch.Tensor,
) -> None:
    """``RowState::step`` (override mode) for every slot, in place.

    ``tokens_B`` holds the sampled tokens and receives the emitted ones (the forced token where a
    row forces; unchanged for idle and error rows). ``override_B`` receives the Rust ``step``'s
    output: the forced token or -1. ``done_B`` marks rows that are done or in error. The emitted
    tokens (-1 where a row emitted nothing) go to ``ring_RB[count % R]``; ``count_1`` is incremented.
    """
    s = RowStates(*state_FB.unbind(0))
    p = SpecParams(*t.params_PB.unbind(0))
    tok_B = tokens_B.long()
    pl = plan(s, p)
    r = redirect(s, p, t, pl, tok_B)
    seq_width = t.seqs_flat.shape[0] // t.seq_len_Q.shape[0]
    forced_tok = t.seqs_flat[r.states.forcing_seq.clamp(min=0) * seq_width + r.states.forcing_pos]
    emitted_B = torch.where(r.forced, forced_tok, r.sampled_B)
    emits = pl.active & ~r.out_of_vocab
    after = emit(r.states, p, t, pl, emitted_B, r.forced, emits)
    after = after._replace(
        phase=torch.where(r.out_of_vocab, ERROR, after.phase),
        error=torch.where(r.out_of_vocab, ERROR_TOKEN_OUT_OF_VOCAB, after.error),
    )
    state_FB.copy_(torch.stack(after))
    override_B.copy_(torch.where(r.forced, emitted_B, -1))
    tokens_B.copy_(torch.where(r.forced, emitted_B, tok_B))
    done_B.copy_((after.phase == DONE) | (after.phase == ERROR))
    ring_RB.index_copy_(0, count_1 % ring_RB.shape[0], torch.where(emits, emitted_B, -1)[None])
    count_1.add_(1)
