"""Thinking-token accounting of eval records: a final EOS inside the thinking span is no thinking token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1kit.eval.methods import SweepConfig
from s1kit.eval.runner import EvalRunner, RunConfig, samples_path
from s1kit.eval.tasks import Problem
from s1kit.generate import Engine
from tests.unit.tiny_lm import tiny_hf_model, tiny_tokenizer

PROBLEM = Problem(task="t", id="p0", question="What is two and three?", answer="5", grading="exact")


def _truncation(engine: Engine, out: Path) -> dict:
    cfg = SweepConfig(budgets=(16,), max_new_tokens=64, max_answer_tokens=8)
    EvalRunner(engine, out, cfg, RunConfig(style="s1")).run({"t": [PROBLEM]}, ["truncation"], progress=False)
    (line,) = samples_path(out, "t", "truncation").read_text(encoding="utf-8").splitlines()
    return json.loads(line)


@pytest.mark.parametrize("k", [0, 4])
def test_truncation_does_not_count_the_final_eos_as_thinking(tmp_path: Path, k: int) -> None:
    tok = tiny_tokenizer()
    hf = tiny_hf_model("qwen2", tok, seed=3)
    free = _truncation(Engine(hf, tok, max_batch=2, max_len=256), tmp_path / "free")
    assert free["finish_reason"] == "length" and free["thinking_tokens"] == 16  # the cut, all thinking
    # Declare the (k+1)-th token of the free run an EOS: the model now ends right there, still thinking.
    eos = free["token_ids"][k]
    k = free["token_ids"].index(eos)
    engine = Engine(hf, tok, max_batch=2, max_len=256, eos_token_ids=[eos])
    rec = _truncation(engine, tmp_path / f"eos{k}")
    assert rec["finish_reason"] == "eos" and rec["token_ids"] == free["token_ids"][: k + 1]
    assert rec["answer_tokens"] == 0
    assert rec["thinking_tokens"] == k  # the k tokens before the EOS; was k + 1
