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
  wrote the token itself (ids that end right after the redirect token, inside a forced text of more
  than one token, read as the model's own token).
- Where the ids cannot decide it (the model itself wrote, at a point where an extension was due, the
  whole text the forced continuation would have produced, e.g. "Wait" when the extension is the
  single token "Wait"), the emission is counted as the forced one. The stream is the same either
  way; only ``extensions_used`` and ``forced_tokens`` can differ from the processor's (by that
  extension), and only in rows whose thinking was then capped: a row whose model ended thinking on
  its own used every extension in both readings.

The replay also checks that the processor ran: a forced token the ids do not contain, an emitted
token the processor would have banned (an attempt to end thinking before the cap and extensions
allow it), thinking past the cap, or tokens after the budget finished (the processor stops such a
request with the spec's first EOS id) make :attr:`Replay.honoured` false with the first violation in
:attr:`Replay.violation`. The OpenAI-compatible client refuses a server on that evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


class _Row:
    """One core row in mask mode, with the buffers of a single-row call."""

    def __init__(self, spec: BudgetSpec, prompt_ids: Sequence[int]) -> None:
        self.batch = BudgetBatch(1, max_rollback=0)
        self.batch.insert(0, spec)
        self.batch.process_prompt(0, prompt_ids)
        self.force = np.empty(1, np.int64)
        self.redirect = np.empty(1, np.int64)
        self.ban = np.empty((1, max(self.batch.ban_width, 1)), np.int32)
        self.token = np.empty(1, np.int64)
        self.flag = np.empty(1, np.int64)

    def phase(self) -> int:
        return int(self.batch.accounting().phase[0])

    def mask(self) -> tuple[int, int, list[int]]:
        self.batch.mask(self.force, self.redirect, self.ban)
        return int(self.force[0]), int(self.redirect[0]), [int(b) for b in self.ban[0] if b >= 0]

    def advance(self, token: int, flag: bool) -> None:
        self.token[0], self.flag[0] = token, int(flag)
        self.batch.advance(self.token, None, self.flag)


def replay(spec: BudgetSpec, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> Replay:
    """Replay ``token_ids`` (everything the engine emitted for one request, a final EOS included)
    through the core with ``spec`` after ``prompt_ids``; see the module docstring."""
    row = _Row(spec, prompt_ids)
    ids = [int(t) for t in token_ids]
    violation = ""
    stopped = False
    phase = row.phase()
    for i, t in enumerate(ids):
        phase = row.phase()
        if phase in (Phase.DONE, Phase.ERROR):
            if spec.eos and t == spec.eos[0] and i == len(ids) - 1:
                stopped = True
                break
            violation = (
                f"token {i} ({t}) follows a finished budget (phase {Phase(phase).name}); the processor "
                f"stops such a request with EOS {spec.eos[0] if spec.eos else None}"
            )
            break
        force, redirect, ban = row.mask()
        if force >= 0 and t != force:
            violation = f"token {i} is {t} where the budget forces {force}"
            break
        if force < 0 and t in ban:
            violation = (
                f"token {i} ({t}) ends thinking where the budget forbids it (before the cap and "
                "extensions allow it)"
            )
            break
        flag = force < 0 and redirect >= 0 and t == redirect and _forced_reading_fits(row, ids, i)
        row.advance(t, flag)
    acc = row.batch.accounting()
    if not stopped:
        phase = int(acc.phase[0])
    return Replay(
        thinking_tokens=int(acc.thinking_tokens[0]),
        answer_tokens=int(acc.answer_tokens[0]),
        forced_tokens=int(acc.forced_tokens[0]),
        extensions_used=int(acc.extensions_used[0]),
        capped=bool(acc.capped[0]),
        final_phase=phase,
        stopped_by_budget=stopped,
        honoured=not violation,
        violation=violation,
    )


def _forced_reading_fits(row: _Row, ids: list[int], i: int) -> bool:
    """Whether the ids after position ``i`` are what the processor forces if the redirect token at
    ``i`` stood for an end attempt (a stream cut off inside the forced text fits too). The row is
    left as it was."""
    saved = row.batch.export_state()
    try:
        row.advance(ids[i], True)
        for t in ids[i + 1 :]:
            if row.phase() in (Phase.DONE, Phase.ERROR):
                return True
            force, _, _ = row.mask()
            if force < 0:
                return True
            if t != force:
                return False
            row.advance(t, False)
        # The ids end inside the forced text: it fits if at least one forced token followed.
        if row.phase() in (Phase.DONE, Phase.ERROR):
            return True
        return row.mask()[0] < 0 or len(ids) > i + 1
    finally:
        row.batch.import_state(saved)


def budget_finish(spec: BudgetSpec, rp: Replay) -> str:
    """s1kit's finish reason for a row whose budget ended it, as s1kit's engine reports it: "error"
    (error phase), "length" (the answer cap reached) or "stop" (the answer stop)."""
    if rp.final_phase == Phase.ERROR:
        return "error"
    cap = spec.max_answer_tokens
    return "length" if cap is not None and rp.answer_tokens >= cap else "stop"


def build_result(
    request: Request, token_ids: Sequence[int], finish: str, tokenizer: Any, refuse: str = ""
) -> Result:
    """One :class:`~s1kit.generate.Result` from what a serving engine returned for ``request``:
    its emitted ``token_ids`` and its finish reason already named in s1kit's terms ("eos", "stop",
    "length", "error"). With a budget, the accounting comes from :func:`replay`; the EOS the
    processor forces to stop a finished budget is dropped and the finish reason becomes the budget's
    (:func:`budget_finish`), so the row reads exactly as s1kit's engine writes it. ``refuse``: the
    fix to name in the :class:`~s1kit.errors.S1kitError` raised when the ids show that the budget was
    not applied (empty: the ids are trusted and such a row is reported as finished by "error")."""
    ids = [int(t) for t in token_ids]
    spec = request.budget
    rp = replay(spec, request.prompt_ids, ids) if spec is not None else None
    if rp is not None and spec is not None:
        if not rp.honoured:
            if refuse:
                raise S1kitError(
                    f"request {request.request_id!r}: the engine did not apply the budget "
                    f"({rp.violation}); {refuse}"
                )
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
