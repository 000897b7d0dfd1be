"""The engine's two budget paths (Rust core per step on the host, tensor mirror in the decode step) agree."""

from __future__ import annotations

import pytest

from s1kit.budget import BudgetSpec
from s1kit.generate import Engine, Request, SamplingParams
from tests.unit.tiny_lm import THINKING_QUESTIONS, thinking_model, tiny_tokenizer

MAX_NEW = 70


@pytest.fixture(scope="module")
def setup():
    """A tiny random Qwen2 whose end-of-thinking delimiters are frequent (they take over the output
    rows of tokens it emits often), so rows extend, cap and answer at different points."""
    tok = tiny_tokenizer()
    hf, prompts, _ = thinking_model("qwen2", tok, 5, THINKING_QUESTIONS[:9], MAX_NEW)
    return tok, hf, prompts


def requests(tok, prompts):
    """Mixed specs (extensions, caps with grace, min thinking, answer caps and stops, think tags),
    rows without a budget, greedy and sampled rows."""
    s1 = BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=2, max_thinking_tokens=40)
    specs = [
        s1,
        s1.replace(num_extensions=0, max_thinking_tokens=8),
        BudgetSpec.from_tokenizer(tok, style="s1", min_thinking_tokens=15, num_extensions=1, grace_tokens=3),
        BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=3, max_answer_tokens=6),
        BudgetSpec.from_tokenizer(tok, style="think_tags", num_extensions=2, max_thinking_tokens=30),
        BudgetSpec.from_tokenizer(tok, style="s1", num_extensions=1, answer_stop=["Final"]),
        None,
    ]
    out = []
    for i, p in enumerate(prompts * 2):
        sampling = (
            SamplingParams(max_new_tokens=MAX_NEW)
            if i % 2
            else SamplingParams(temperature=0.9, top_p=0.95, seed=i, max_new_tokens=MAX_NEW - i)
        )
        out.append(Request(p, sampling, budget=specs[i % len(specs)], request_id=str(i)))
    return out


def test_tensor_path_equals_host_path(setup):
    tok, hf, prompts = setup
    reqs = requests(tok, prompts)
    # max_batch below the number of requests: rows are admitted and compacted while others decode.
    engine = Engine(hf, tok, max_batch=8, max_len=256, budget_path="host")
    assert not engine.tensor_budget
    host = engine.generate(reqs)
    engine.budget_path = "tensor"
    assert engine.tensor_budget
    tensor = engine.generate(reqs)
    again = engine.generate(reqs)  # reuses the device budget's buffers
    fields = ("token_ids", "finish_reason", "thinking_tokens", "answer_tokens", "forced_tokens")
    fields += ("extensions_used", "capped")
    for h, t, a in zip(host, tensor, again, strict=True):
        for f in fields:
            assert getattr(t, f) == getattr(h, f), f"request {h.request_id}: {f}"
            assert getattr(a, f) == getattr(h, f), f"request {h.request_id} (second call): {f}"
    # The run must exercise what the paths could disagree on.
    assert sum(r.extensions_used for r in host) >= 5
    assert any(r.capped for r in host)
    assert sum(r.forced_tokens for r in host) >= 20
    assert len({r.finish_reason for r in host}) >= 2


def test_budget_path_is_checked(setup):
    tok, hf, _ = setup
    with pytest.raises(ValueError, match="budget_path"):
        Engine(hf, tok, max_batch=2, max_len=64, budget_path="gpu")
    assert not Engine(hf, tok, max_batch=2, max_len=64).tensor_budget  # auto on CPU: host
