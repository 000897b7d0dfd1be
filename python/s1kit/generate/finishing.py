"""Finishing a row: why it ends (:func:`finish_reason`) and what it produced (:func:`result_for`).

A row ends at its first end, checked in this order: the budget's error phase ("error"), an EOS id of
the engine or of its budget ("eos"), a ``stop_token_ids`` id ("stop"), the budget's DONE phase
("length" when the answer cap was reached, else "stop"), a stop string in the decoded tail ("stop"),
``max_new_tokens`` or the cache length ("length"). :class:`Results` collects the finished rows'
:class:`~s1kit.generate.types.Result` in request order. Compaction, which frees the finished rows'
slots, is the scheduler's (:meth:`s1kit.generate.scheduler.Scheduler.compact`).
"""

from __future__ import annotations

from typing import Protocol

from tqdm.auto import tqdm

from s1kit.budget import Accounting, Phase
from s1kit.generate.slots import Row
from s1kit.generate.types import Result


class Decoder(Protocol):
    """The part of a ``transformers`` tokenizer that finishing uses."""

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


def finish_reason(
    row: Row,
    t: int,
    slot: int,
    acc: Accounting | None,
    *,
    eos_token_ids: frozenset[int],
    tokenizer: Decoder,
    max_len: int,
) -> str | None:
    """Why ``row`` ends with its last token ``t`` (in ``slot``; ``acc``: budget counters as of that
    token, ``None`` when no row has a budget), or ``None`` if it continues."""
    phase = int(acc.phase[slot]) if row.has_budget and acc is not None else None
    if phase == Phase.ERROR:
        return "error"
    if t in eos_token_ids or t in row.extra_eos:
        return "eos"
    if t in row.stop_ids:
        return "stop"
    if phase == Phase.DONE:
        spec = row.request.budget
        assert spec is not None and acc is not None
        cap = spec.max_answer_tokens
        return "length" if cap is not None and int(acc.answer_tokens[slot]) >= cap else "stop"
    if row.stops:
        tail = tokenizer.decode(row.tokens[-row.stop_window :], skip_special_tokens=False)
        if any(s in tail for s in row.stops):
            return "stop"
    if len(row.tokens) >= row.request.sampling.max_new_tokens:
        return "length"
    if len(row.prompt) + len(row.tokens) >= max_len:
        return "length"
    return None


def result_for(row: Row, slot: int, acc: Accounting | None, now: float, tokenizer: Decoder) -> Result:
    """The :class:`Result` of a finished ``row`` (``row.finish`` set), at time ``now``."""
    ids = row.tokens[:-1] if row.finish == "eos" else row.tokens
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if row.finish == "stop" and row.stops:
        cuts = [i for i in (text.find(s) for s in row.stops) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
    res = Result(
        request_id=row.request_id,
        prompt_ids=list(row.prompt),
        token_ids=list(row.tokens),
        text=text,
        finish_reason=row.finish or "length",
        prefill_tokens_per_s=row.prefill_tps,
        decode_tokens_per_s=(len(row.tokens) - 1) / max(now - row.t_decode0, 1e-9)
        if len(row.tokens) > 1
        else 0.0,
    )
    if row.has_budget and acc is not None:
        res.thinking_tokens = int(acc.thinking_tokens[slot])
        res.answer_tokens = int(acc.answer_tokens[slot])
        res.forced_tokens = int(acc.forced_tokens[slot])
        res.extensions_used = int(acc.extensions_used[slot])
        res.capped = bool(acc.capped[slot])
    return res


class Results:
    """The results of one ``generate`` call, in request order, and its progress bar."""

    def __init__(self, n: int, progress: bool) -> None:
        self._results: list[Result | None] = [None] * n
        self._bar = tqdm(total=n, disable=not progress, desc="generate", unit="req")

    def add(self, index: int, result: Result) -> None:
        self._results[index] = result
        self._bar.update(1)

    def close(self) -> list[Result]:
        self._bar.close()
        return [r for r in self._results if r is not None]
