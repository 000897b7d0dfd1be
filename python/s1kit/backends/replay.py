"""Per-row budget accounting recomputed on the host from the token ids a serving engine emitted.

vLLM and SGLang run s1kit's budget processor inside their engine core, usually in another process
(vLLM V1's engine core, its tensor-parallel workers, or a remote server), and return only token ids
and text. The accounting (thinking, answer and forced tokens, extensions used, capped) is a function
of the prompt, the spec and the emitted ids plus one bit per emitted token the ids do not always
carry: whether an emission of a row's *redirect* token (the next extension's first token, or the
answer prefix's first token in place of an EOS) stood for the model's attempt to end thinking (then
it is forced and counted) or was the model's own token. :func:`replay` feeds the ids through the
core's mask mode (the same semantics the processor runs) and infers that bit:

- **Exact** wherever the ids decide it: a forced continuation that does not follow means the model
  wrote the token itself.
- Where the ids cannot decide it, the emission is counted as the forced one (the end attempt). Two
  cases: the model itself wrote, at a point where an extension or the answer prefix was due, the
  whole text the forced continuation would have produced (e.g. "Wait" when the extension is the
  single token "Wait"); or the ids stop (``max_new_tokens``) right after the redirect token or inside
  the forced text. The ids are the same either way; the counters can differ from the processor's by
  that one extension or answer prefix (``extensions_used``, ``forced_tokens``, and for the answer
  prefix the thinking/answer split). A row whose model went on to end its thinking on its own used
  every extension in both readings.

The replay also checks that the processor ran: a forced token the ids do not contain, an emitted
token the processor would have banned (an attempt to end thinking before the cap and extensions
allow it), thinking past the cap, or tokens after the budget finished (the processor stops such a
request with the spec's first EOS id) make :attr:`Replay.honoured` false with the first violation in
:attr:`Replay.violation`. The OpenAI-compatible client refuses a server on that evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.errors import S1kitError
from s1kit.generate.types import Request, Result


@dataclass(frozen=True)
class Replay:
    """What the ids imply. ``stopped_by_budget``: the last id is the EOS the processor forces once a
    row is DONE (answer cap or answer stop) or in its error phase; ``final_phase`` is the row's phase
    before that EOS (a :class:`~s1kit.budget.Phase` value)."""

    thinking_tokens: int
    answer_tokens: int
    forced_tokens: int
    extensions_used: int
    capped: bool
    final_phase: int
    stopped_by_budget: bool
    honoured: bool
    violation: str = ""


_ENDED = (int(Phase.DONE), int(Phase.ERROR))
_log = logging.getLogger(__name__)


def replay(spec: BudgetSpec, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> Replay:
    """Replay ``token_ids`` (everything the engine emitted for one request, a final EOS included)
    through the core with ``spec`` after ``prompt_ids``; see the module docstring."""
    return replay_batch([spec], [prompt_ids], [token_ids])[0]


def replay_batch(
    specs: Sequence[BudgetSpec], prompts: Sequence[Sequence[int]], token_ids: Sequence[Sequence[int]]
) -> list[Replay]:
    """:func:`replay` for many requests at once: one core batch, one mask and one advance call per
    token position for all rows still running (the per-token cost is the core's, not Python's)."""
    n = len(specs)
    if not n:
        return []
    batch = BudgetBatch(n, max_rollback=0)
    for i, (spec, prompt) in enumerate(zip(specs, prompts, strict=True)):
        batch.insert(i, spec)
        batch.process_prompt(i, prompt)
    ids = [np.asarray([int(t) for t in row], np.int64) for row in token_ids]
    eos0 = np.asarray([spec.eos[0] if spec.eos else -1 for spec in specs], np.int64)
    violation = [""] * n
    stopped = [False] * n
    width = max(batch.ban_width, 1)
    force_N, redirect_N = np.empty(n, np.int64), np.empty(n, np.int64)
    ban_NK = np.empty((n, width), np.int32)
    live = np.asarray([i for i in range(n) if len(ids[i])], np.int64)
    k = 0
    while len(live):
        tok_N = np.fromiter((ids[i][k] for i in live.tolist()), np.int64, len(live))
        ended = np.isin(batch.accounting().phase[live], _ENDED)
        for j in np.flatnonzero(ended).tolist():
            i = int(live[j])
            if tok_N[j] == eos0[i] and k == len(ids[i]) - 1:
                stopped[i] = True
            else:
                violation[i] = (
                    f"token {k} ({int(tok_N[j])}) follows a finished budget; the processor stops such "
                    f"a request with EOS {int(eos0[i])}"
                )
        live, tok_N = live[~ended], tok_N[~ended]
        m = len(live)
        if not m:
            break
        force, redirect, ban = force_N[:m], redirect_N[:m], ban_NK[:m]
        batch.mask(force, redirect, ban, live)
        wrong = (force >= 0) & (tok_N != force)
        banned = (force < 0) & (ban == tok_N[:, None]).any(axis=1)
        for j in np.flatnonzero(wrong).tolist():
            violation[int(live[j])] = f"token {k} is {int(tok_N[j])} where the budget forces {int(force[j])}"
        for j in np.flatnonzero(banned).tolist():
            violation[int(live[j])] = (
                f"token {k} ({int(tok_N[j])}) ends thinking where the budget forbids it (before the cap "
                "and extensions allow it)"
            )
        flag_N = np.zeros(m, np.int64)
        for j in np.flatnonzero((force < 0) & (redirect >= 0) & (tok_N == redirect)).tolist():
            flag_N[j] = _forced_reading_fits(batch, int(live[j]), ids[int(live[j])], k)
        ok = ~(wrong | banned)
        batch.advance(tok_N[ok], live[ok], flag_N[ok])
        k += 1
        live = live[ok]
        live = live[np.fromiter((len(ids[i]) > k for i in live.tolist()), np.bool_, len(live))]
    acc = batch.accounting()
    out = []
    for i in range(n):
        phase = int(acc.phase[i])
        out.append(
            Replay(
                thinking_tokens=int(acc.thinking_tokens[i]),
                answer_tokens=int(acc.answer_tokens[i]),
                forced_tokens=int(acc.forced_tokens[i]),
                extensions_used=int(acc.extensions_used[i]),
                capped=bool(acc.capped[i]),
                final_phase=phase,
                stopped_by_budget=stopped[i],
                honoured=not violation[i],
                violation=violation[i],
            )
        )
    return out


def _forced_reading_fits(batch: BudgetBatch, slot: int, ids: npt.NDArray[np.int64], k: int) -> bool:
    """Whether the ids after position ``k`` of row ``slot`` are what the processor forces if the
    redirect token at ``k`` stood for an end attempt (ids that end inside the forced text, even right
    after the redirect token, fit). Every row is left as it was."""
    saved = batch.export_state()
    rows = np.asarray([slot], np.int64)
    force, redirect = np.empty(1, np.int64), np.empty(1, np.int64)
    ban = np.empty((1, max(batch.ban_width, 1)), np.int32)

    def forced_next() -> int:
        if int(batch.accounting().phase[slot]) in _ENDED:
            return -1
        batch.mask(force, redirect, ban, rows)
        return int(force[0])

    try:
        batch.advance(ids[k : k + 1], rows, np.ones(1, np.int64))
        for j in range(k + 1, len(ids)):
            f = forced_next()
            if f < 0:
                return True
            if ids[j] != f:
                return False
            batch.advance(ids[j : j + 1], rows, np.zeros(1, np.int64))
        return True  # the ids end inside (or right before) the forced text: nothing contradicts it
    finally:
        batch.import_state(saved)


def budget_finish(spec: BudgetSpec, rp: Replay) -> str:
    """s1kit's finish reason for a row whose budget ended it, as s1kit's engine reports it: "error"
    (error phase), "length" (the answer cap reached) or "stop" (the answer stop)."""
    if rp.final_phase == Phase.ERROR:
        return "error"
    cap = spec.max_answer_tokens
    return "length" if cap is not None and rp.answer_tokens >= cap else "stop"


def build_results(
    requests: Sequence[Request],
    token_ids: Sequence[Sequence[int]],
    finishes: Sequence[str],
    tokenizer: Any,
    refuse: str = "",
) -> list[Result]:
    """One :class:`~s1kit.generate.Result` per request from what a serving engine returned: its
    emitted ids and its finish reason already named in s1kit's terms ("eos", "stop", "length",
    "error"). With a budget, the accounting comes from :func:`replay_batch` (all budgeted rows in one
    batch); the EOS the processor forces to stop a finished budget is dropped and the finish reason
    becomes the budget's (:func:`budget_finish`), so the row reads exactly as s1kit's engine writes
    it. ``refuse``: the fix to name in the :class:`~s1kit.errors.S1kitError` raised when the ids show
    that the budget was not applied (empty: such a row is logged as a warning and finishes by
    "error")."""
    budgeted = [i for i, r in enumerate(requests) if r.budget is not None]
    replays = replay_batch(
        [requests[i].budget for i in budgeted],  # type: ignore[misc]
        [requests[i].prompt_ids for i in budgeted],
        [token_ids[i] for i in budgeted],
    )
    by_row: dict[int, Replay] = dict(zip(budgeted, replays, strict=True))
    return [
        _result(r, ids, f, tokenizer, refuse, by_row.get(i))
        for i, (r, ids, f) in enumerate(zip(requests, token_ids, finishes, strict=True))
    ]


def _result(
    request: Request, token_ids: Sequence[int], finish: str, tokenizer: Any, refuse: str, rp: Replay | None
) -> Result:
    ids = [int(t) for t in token_ids]
    spec = request.budget
    if rp is not None and spec is not None:
        if not rp.honoured:
            if refuse:
                raise S1kitError(
                    f"request {request.request_id!r}: the engine did not apply the budget "
                    f"({rp.violation}); {refuse}"
                )
            _log.warning("request %r: the ids break its budget (%s)", request.request_id, rp.violation)
            finish = "error"
        elif rp.stopped_by_budget:
            ids = ids[:-1]
            finish = budget_finish(spec, rp)
        elif rp.final_phase == Phase.ERROR:
            finish = "error"
        elif finish == "length" and rp.final_phase == Phase.DONE:
            finish = budget_finish(spec, rp)
    shown = ids[:-1] if finish == "eos" else ids
    text = tokenizer.decode(shown, skip_special_tokens=False)
    stops = request.sampling.stop
    if finish == "stop" and stops:
        cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
    res = Result(
        request_id=request.request_id,
        prompt_ids=[int(t) for t in request.prompt_ids],
        token_ids=ids,
        text=text,
        finish_reason=finish,
    )
    if rp is not None:
        res.thinking_tokens = rp.thinking_tokens
        res.answer_tokens = rp.answer_tokens
        res.forced_tokens = rp.forced_tokens
        res.extensions_used = rp.extensions_used
        res.capped = rp.capped
    return res
