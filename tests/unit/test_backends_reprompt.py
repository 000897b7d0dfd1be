"""``--forcing reprompt`` (s1's way: one engine call per "Wait") agrees token for token with in-loop forcing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from s1kit.backends.forcing import Cost, generate_forced
from s1kit.backends.own import OwnBackend
from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, Result, SamplingParams
from tests.unit.tiny_lm import THINKING_QUESTIONS, thinking_model, tiny_tokenizer

QUESTIONS = THINKING_QUESTIONS[:9]
MAX_NEW = 60


class RecordingBackend:
    """The s1kit backend, recording every request it is handed (what reprompt sends to an engine)."""

    def __init__(self, inner: OwnBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.tokenizer = inner.tokenizer
        self.max_len = inner.max_len
        self.max_batch = inner.max_batch
        self.calls: list[list[Request]] = []

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.calls.append(list(requests))
        return self.inner.generate(requests)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def setup() -> tuple[Any, Engine, list[list[int]]]:
    tok = tiny_tokenizer()
    hf, prompts, _ = thinking_model("llama", tok, 7, QUESTIONS, MAX_NEW)
    return tok, Engine(hf, tok, max_batch=16, max_len=256), prompts


# caps, 0/1/2 extensions, both, a minimum, a tight answer cap, a total limit that cuts forced text
SPECS: dict[str, dict[str, Any]] = {
    "cap=6": dict(max_thinking_tokens=6),
    "cap=10": dict(max_thinking_tokens=10, max_answer_tokens=12),
    "wait=0": dict(num_extensions=0, max_answer_tokens=10),
    "wait=1": dict(num_extensions=1),
    "wait=2": dict(num_extensions=2, max_answer_tokens=8),
    "wait=2,cap=25": dict(num_extensions=2, max_thinking_tokens=25),
    "min=15": dict(min_thinking_tokens=15, max_answer_tokens=3),
    "answer=0": dict(num_extensions=1, max_answer_tokens=0),
    "wait=2,short": dict(num_extensions=2, max_new_tokens=14),
}


def _run(engine: Engine, prompts: list[list[int]], spec: BudgetSpec, max_new: int, forcing: str) -> Any:
    backend = RecordingBackend(OwnBackend(engine))
    reqs = [
        Request(p, SamplingParams(max_new_tokens=max_new, seed=3), budget=spec, request_id=f"q{i}")
        for i, p in enumerate(prompts)
    ]
    return generate_forced(backend, reqs, forcing), backend


def _accounting(r: Result) -> tuple[Any, ...]:
    return (r.thinking_tokens, r.answer_tokens, r.forced_tokens, r.extensions_used, r.capped, r.finish_reason)


@pytest.mark.parametrize("name", list(SPECS))
def test_reprompt_agrees_with_inloop_token_for_token(setup: Any, name: str) -> None:
    tok, engine, prompts = setup
    kw = dict(SPECS[name])
    max_new = kw.pop("max_new_tokens", MAX_NEW)
    spec = BudgetSpec.from_tokenizer(tok, style="s1", **kw)
    inloop, _ = _run(engine, prompts, spec, max_new, "inloop")
    again, backend = _run(engine, prompts, spec, max_new, "reprompt")
    for p, (a, ca), (b, cb) in zip(prompts, inloop, again, strict=True):
        assert b.request_id == a.request_id and b.prompt_ids == p
        assert b.token_ids == a.token_ids, (name, p)
        assert b.text == a.text
        assert _accounting(b) == _accounting(a), (name, b.token_ids)
        assert ca == Cost(len(p), 1)
        # One call per thinking stretch (unless a limit cut the row) and one for the answer; every call
        # prefills the whole context.
        assert cb.engine_calls >= 1 + b.extensions_used or b.finish_reason == "length"
        assert cb.prefill_tokens >= cb.engine_calls * len(p)
        assert (cb.prefill_tokens > len(p)) == (cb.engine_calls > 1)
        if b.finish_reason == "eos":  # N + 1 thinking stretches, then the answer
            assert cb.engine_calls == b.extensions_used + 2
    # Every call is a plain request (no spec reaches the engine) whose prompt is the original prompt
    # plus the token ids emitted before it: re-prompting never re-tokenizes text.
    final = {tuple(p): b.token_ids for p, (b, _) in zip(prompts, again, strict=True)}
    for call in backend.calls:
        for req in call:
            assert req.budget is None
            prompt = next(p for p in final if tuple(req.prompt_ids[: len(p)]) == p)
            assert list(req.prompt_ids[len(prompt) :]) == final[prompt][: len(req.prompt_ids) - len(prompt)]
    assert sum(c.engine_calls for _, c in again) == sum(len(call) for call in backend.calls)
    # Each case exercises what it is named after.
    results = [r for r, _ in inloop]
    if kw.get("num_extensions"):
        assert sum(r.extensions_used for r in results) >= len(prompts), name
    if kw.get("max_thinking_tokens"):
        assert any(r.capped for r in results), name
    if name == "wait=2,short":
        assert any(r.finish_reason == "length" and r.extensions_used for r in results)


def test_the_forced_answer_prefix_continues_what_the_text_ends_with(setup: Any) -> None:
    """An answer prefix starting with a token the model often writes: where the text before the cap
    already ends with it, neither way repeats it (``forced_tokens`` one short of the prefix)."""
    tok, engine, prompts = setup
    plain = engine.generate([Request(p, SamplingParams(max_new_tokens=12)) for p in prompts])
    end = tok.convert_tokens_to_ids("<|im_start|>")
    row = next(i for i, r in enumerate(plain) if end not in r.token_ids)  # still thinking at 12
    shortened = 0
    for cap in range(3, 9):
        spec = BudgetSpec.from_tokenizer(tok, style="s1", max_thinking_tokens=cap)
        # The prefix starts with the token that row writes last before the cap, instead of "\n".
        spec = spec.replace(answer_prefix=(plain[row].token_ids[cap - 1], *spec.answer_prefix[1:]))
        inloop, _ = _run(engine, prompts, spec, 40, "inloop")
        again, _ = _run(engine, prompts, spec, 40, "reprompt")
        for (a, _), (b, _) in zip(inloop, again, strict=True):
            assert b.token_ids == a.token_ids and _accounting(b) == _accounting(a)
            shortened += a.capped and a.forced_tokens == len(spec.answer_prefix) - 1
    assert shortened > 0


def test_reprompt_refuses_what_it_cannot_run(setup: Any) -> None:
    tok, engine, prompts = setup
    backend = OwnBackend(engine)
    spec = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=1, grace_tokens=2)
    with pytest.raises(ValueError, match="grace_tokens=2"):
        generate_forced(backend, [Request(prompts[0], budget=spec)], "reprompt")
    plain = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=1)
    closed = tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="end inside the thinking span"):
        generate_forced(backend, [Request(closed, budget=plain)], "reprompt")
    with pytest.raises(ValueError, match="forcing='both'"):
        generate_forced(backend, [Request(prompts[0], budget=plain)], "both")
