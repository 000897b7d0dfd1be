"""How budget forcing runs on a backend: ``inloop`` (the default) or ``reprompt`` (s1's own way).

``inloop``: each request goes to the engine once, with its :class:`~s1kit.budget.BudgetSpec`; the
engine's budget core forces the answer prefix at the cap and replaces each end of thinking by "Wait"
inside its decode loop. The prompt is prefilled once.

``reprompt``: the s1 reference's method, built only on :meth:`Backend.generate` with plain requests
(no spec reaches the engine), so it runs on any engine, with or without s1kit's processor:

1. generate thinking until the model tries to end it (a ``think_end`` token or an EOS id, passed as
   ``stop_token_ids``) or the thinking cap is reached (``max_new_tokens`` = the cap left);
2. for each extension still owed, drop the end token, append the extension's tokens ("Wait") and
   re-submit prompt + everything generated as a new prompt (one engine call per extension, the whole
   context prefilled again);
3. at the cap, or on an EOS once no extension is owed, append the answer prefix ("\\n<|im_start|>answer
   \\nFinal Answer:", minus the part the text already ends with) and generate the answer in one more
   call (capped by ``max_answer_tokens``); a model that ends its thinking itself continues into its
   answer the same way, without anything forced.

It relies on the :class:`Backend` contract of :class:`~s1kit.generate.Result`: a request stopped by
one of its ``stop_token_ids`` returns that token as the last of its ``token_ids`` (checked on s1kit's
engine and on vLLM's CPU build, tests/engines/test_vllm_reprompt.py).

Where it matches the reference (``simplescaling/s1`` README "vLLM with budget forcing" and its
lm-evaluation-harness fork): stop at the end-of-thinking token, append "Wait" and generate again with the
thinking budget left, force the answer delimiter and "Final Answer:" when the budget runs out, one engine
call per "Wait" (batched across rows: one call per round). Where it differs, on purpose, so that it
agrees token for token with ``inloop`` (the test compares them on greedy decoding):

- it re-prompts with token ids, never re-tokenized text (the README appends decoded text, which can
  re-tokenize differently at the boundary); the harness fork also appends token ids;
- it keeps the in-loop accounting rules: forced tokens count in the phase they are emitted in (a "Wait"
  is thinking, the answer prefix is answer) and the cap counts forced "Wait"s; an end attempt on the last
  token before the cap still gets its "Wait"; the answer prefix skips what the text already ends with
  (e.g. the model's own "\\n"); an EOS in thinking is replaced by the answer prefix (``capped`` false);
- ``max_new_tokens`` bounds everything generated, forced tokens included (the reference gives the
  answer call its own full limit).

Cost: call k of a row prefills the prompt plus all tokens generated before it. A row with N extensions
takes N + 2 calls (N + 1 thinking stretches, then the answer; fewer when a limit ends it first) and
prefills its prompt that many times, where in-loop prefills it once. :class:`Cost` returns the prefilled
tokens and engine calls per request. Supported specs: ``grace_tokens == 0``, one-token ``think_end`` and
``answer_stop`` spellings (as the s1 and think-tags delimiters are), prompts that end inside thinking;
others raise ``ValueError``. A request without a spec, or whose spec can force nothing, goes to the
engine once as with ``inloop``. Sampling reuses the request's seed on every call, so only greedy
decoding is expected to agree with ``inloop``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from s1kit.backends.base import Backend

if TYPE_CHECKING:
    from s1kit.budget import BudgetSpec
    from s1kit.generate.types import Request, Result

FORCING_MODES: tuple[str, ...] = ("inloop", "reprompt")


@dataclass(frozen=True)
class Cost:
    """What one request cost the engine: prompt tokens prefilled over all its calls, and the calls."""

    prefill_tokens: int
    engine_calls: int


def generate_forced(backend: Backend, requests: Sequence[Request], forcing: str) -> list[tuple[Result, Cost]]:
    """Run ``requests`` on ``backend`` with budget forcing done ``forcing`` way; results in order."""
    if forcing not in FORCING_MODES:
        raise ValueError(f"forcing={forcing!r}: choose one of {', '.join(FORCING_MODES)}")
    if forcing == "inloop":
        results = backend.generate(requests)
        return [(r, Cost(len(q.prompt_ids), 1)) for q, r in zip(requests, results, strict=True)]
    return _Reprompt(backend, requests).run()


def _forces_nothing(spec: BudgetSpec) -> bool:
    return (
        spec.max_thinking_tokens is None
        and spec.num_extensions == 0
        and spec.min_thinking_tokens == 0
        and not (spec.answer_prefix and spec.eos)
    )


def _check_spec(i: int, spec: BudgetSpec, prompt: Sequence[int]) -> None:
    where = f"requests[{i}]: --forcing reprompt"
    if spec.grace_tokens:
        raise ValueError(f"{where} does not support grace_tokens={spec.grace_tokens}; use --forcing inloop")
    for name, seqs in (("think_end", spec.think_end), ("answer_stop", spec.answer_stop)):
        if any(len(s) != 1 for s in seqs):
            raise ValueError(
                f"{where} needs one-token {name} spellings (it stops the engine on them), got {list(seqs)}; "
                "use --forcing inloop"
            )
    ends = {s[0] for s in spec.think_end}
    if spec.think_start:
        opened = [
            k + len(s)
            for s in spec.think_start
            for k in range(len(prompt) - len(s) + 1)
            if tuple(prompt[k : k + len(s)]) == s
        ]
        if not opened or any(t in ends for t in prompt[max(opened) :]):
            raise ValueError(
                f"{where} needs prompts that end inside the thinking span (open it with think_start)"
            )


@dataclass
class _Row:
    """One request's progress through its calls; counts follow the in-loop budget core's rules."""

    index: int
    request: Request
    spec: BudgetSpec
    ids: list[int] = field(default_factory=list)
    phase: str = "thinking"  # thinking -> answer -> done
    finish: str = ""
    thinking: int = 0
    answer: int = 0
    forced: int = 0
    extensions: int = 0
    capped: bool = False
    prefill: int = 0
    calls: int = 0
    sampled: int = 0


class _Reprompt:
    def __init__(self, backend: Backend, requests: Sequence[Request]) -> None:
        self.backend = backend
        self.requests = list(requests)
        self.rows: list[_Row] = []
        self.direct: list[int] = []  # requests that go to the engine once, as in-loop
        for i, r in enumerate(self.requests):
            if r.budget is None or _forces_nothing(r.budget):
                self.direct.append(i)
                continue
            _check_spec(i, r.budget, r.prompt_ids)
            row = _Row(i, r, r.budget)
            self._after_thinking_forced(row)  # a cap of 0 forces the answer before any call
            self.rows.append(row)

    # -------------------------------------------------------------------------------------- limits

    def _room(self, row: _Row) -> float:
        room: float = row.request.sampling.max_new_tokens - len(row.ids)
        if self.backend.max_len is not None:
            room = min(room, self.backend.max_len - len(row.request.prompt_ids) - len(row.ids))
        return room

    def _done(self, row: _Row, finish: str) -> None:
        row.phase, row.finish = "done", finish

    def _force(self, row: _Row, seq: Sequence[int]) -> bool:
        """Emit forced tokens one by one, as the decode loop would; False if a limit ended the row."""
        for t in seq:
            if self._room(row) <= 0:
                self._done(row, "length")
                return False
            row.ids.append(int(t))
            row.forced += 1
            if row.phase == "thinking":
                row.thinking += 1
            else:
                row.answer += 1
        if self._room(row) <= 0:
            self._done(row, "length")
            return False
        return True

    def _answer_cap_reached(self, row: _Row) -> bool:
        cap = row.spec.max_answer_tokens
        return cap is not None and row.answer >= cap

    def _begin_answer(self, row: _Row, capped: bool) -> None:
        prefix = row.spec.answer_prefix
        stream = [*row.request.prompt_ids, *row.ids]
        overlap = next(
            (k for k in range(len(prefix) - 1, 0, -1) if stream[-k:] == list(prefix[:k])),
            0,
        )
        row.phase, row.capped = "answer", capped
        if self._force(row, prefix[overlap:]) and self._answer_cap_reached(row):
            self._done(row, "length")

    def _after_thinking_forced(self, row: _Row) -> None:
        cap = row.spec.max_thinking_tokens
        if row.phase == "thinking" and cap is not None and row.thinking >= cap:
            self._begin_answer(row, capped=True)

    # ---------------------------------------------------------------------------------------- calls

    def _call(self, row: _Row) -> Request:
        from s1kit.generate.types import Request

        spec, sp = row.spec, row.request.sampling
        limit = self._room(row)
        if row.phase == "thinking":
            stops = {s[0] for s in spec.think_end} | set(spec.eos)
            if spec.max_thinking_tokens is not None:
                limit = min(limit, spec.max_thinking_tokens - row.thinking)
        else:
            stops = set(spec.eos) | {s[0] for s in spec.answer_stop}
            if spec.max_answer_tokens is not None:
                limit = min(limit, spec.max_answer_tokens - row.answer)
        assert limit >= 1 and math.isfinite(limit), (row, limit)
        sampling = replace(
            sp,
            max_new_tokens=int(limit),
            stop_token_ids=tuple(sorted(stops | set(sp.stop_token_ids))),
        )
        prompt = [*row.request.prompt_ids, *row.ids]
        row.prefill += len(prompt)
        row.calls += 1
        return Request(prompt_ids=prompt, sampling=sampling, budget=None, request_id=f"{row.index}")

    def _book_thinking(self, row: _Row, out: Result) -> None:
        spec = row.spec
        new = [int(t) for t in out.token_ids]
        row.ids += new
        row.thinking += len(new)
        row.sampled += len(new)
        t = new[-1] if new else -1
        ends = {s[0] for s in spec.think_end}
        if t in ends or t in spec.eos:  # the model tries to end its thinking
            before = row.thinking - 1
            if before < spec.min_thinking_tokens or row.extensions < spec.num_extensions:
                row.ids.pop()
                row.thinking -= 1
                ext = spec.extensions[row.extensions % len(spec.extensions)]
                row.extensions += 1
                if self._force(row, ext):
                    self._after_thinking_forced(row)
                return
            if t in spec.eos and spec.answer_prefix:
                row.ids.pop()
                row.thinking -= 1
                self._begin_answer(row, capped=False)
                return
            if t in spec.eos:
                self._done(row, "eos")
                return
            row.phase = "answer"  # a natural end: the delimiter is the last thinking token
            if self._answer_cap_reached(row) or self._room(row) <= 0:
                self._done(row, "length")
            return
        if out.finish_reason in ("eos", "stop", "error"):
            self._done(row, out.finish_reason)
        elif self._room(row) <= 0:
            self._done(row, "length")
        elif spec.max_thinking_tokens is not None and row.thinking >= spec.max_thinking_tokens:
            self._begin_answer(row, capped=True)
        else:
            self._done(row, out.finish_reason)  # the engine's own limit (its cache length)

    def _book_answer(self, row: _Row, out: Result) -> None:
        spec = row.spec
        new = [int(t) for t in out.token_ids]
        row.ids += new
        row.answer += len(new)
        row.sampled += len(new)
        t = new[-1] if new else -1
        if t in spec.eos or out.finish_reason == "eos":
            self._done(row, "eos")
        elif t in row.request.sampling.stop_token_ids:
            self._done(row, "stop")
        elif any(s[0] == t for s in spec.answer_stop):
            self._done(row, "length" if self._answer_cap_reached(row) else "stop")
        elif self._answer_cap_reached(row) or self._room(row) <= 0:
            self._done(row, "length")
        else:
            self._done(row, out.finish_reason)

    # ------------------------------------------------------------------------------------------ run

    def run(self) -> list[tuple[Result, Cost]]:
        out: list[tuple[Result, Cost] | None] = [None] * len(self.requests)
        if self.direct:
            for i, pair in zip(
                self.direct,
                generate_forced(self.backend, [self.requests[i] for i in self.direct], "inloop"),
                strict=True,
            ):
                out[i] = pair
        t0 = time.perf_counter()
        first_prefill_tps: dict[int, float] = {}
        while True:
            live = [r for r in self.rows if r.phase != "done"]
            if not live:
                break
            calls = [self._call(r) for r in live]
            results = self.backend.generate(calls)
            for row, res in zip(live, results, strict=True):
                first_prefill_tps.setdefault(row.index, res.prefill_tokens_per_s)
                if row.phase == "thinking":
                    self._book_thinking(row, res)
                else:
                    self._book_answer(row, res)
        wall = max(time.perf_counter() - t0, 1e-9)
        for row in self.rows:
            out[row.index] = (
                self._result(row, first_prefill_tps.get(row.index, 0.0), wall),
                Cost(row.prefill, row.calls),
            )
        assert all(o is not None for o in out)
        return [o for o in out if o is not None]

    def _result(self, row: _Row, prefill_tps: float, wall: float) -> Result:
        from s1kit.generate.types import Result

        ids = row.ids[:-1] if row.finish == "eos" and row.ids else row.ids
        text: str = self.backend.tokenizer.decode(ids, skip_special_tokens=False)
        stops = row.request.sampling.stop
        if row.finish == "stop" and stops:
            cuts = [k for k in (text.find(s) for s in stops) if k >= 0]
            if cuts:
                text = text[: min(cuts)]
        return Result(
            request_id=row.request.request_id or str(row.index),
            prompt_ids=list(row.request.prompt_ids),
            token_ids=list(row.ids),
            text=text,
            finish_reason=row.finish,
            thinking_tokens=row.thinking,
            answer_tokens=row.answer,
            forced_tokens=row.forced,
            extensions_used=row.extensions,
            capped=row.capped,
            prefill_tokens_per_s=prefill_tps,
            decode_tokens_per_s=row.sampled / wall,
        )
