"""``s1kit eval --grace-tokens``: budget forcing's caps let a row finish its line before the answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s1kit.eval.methods import SweepConfig
from s1kit.eval.runner import EvalRunner, RunConfig, samples_path
from s1kit.eval.tasks import Problem
from s1kit.generate import Engine
from tests.unit.tiny_lm import favour_token, tiny_hf_model, tiny_tokenizer

PROBLEM = Problem(task="t", id="p0", question="What is two and three?", answer="5", grading="exact")
CAP = 8


def _run(engine: Engine, out: Path, method: str, budget: int, grace: int) -> dict:
    cfg = SweepConfig(
        budgets=(budget,), extensions=(0,), max_new_tokens=96, max_answer_tokens=4, grace_tokens=grace
    )
    EvalRunner(engine, out, cfg, RunConfig(style="s1")).run({"t": [PROBLEM]}, [method], progress=False)
    (line,) = samples_path(out, "t", method).read_text(encoding="utf-8").splitlines()
    return json.loads(line)


def test_a_cap_with_grace_forces_the_answer_after_the_line_ends(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    hf = tiny_hf_model("llama", tok, seed=5)  # untied: only the newline's output row will change
    free = _run(Engine(hf, tok, max_batch=1, max_len=256), tmp_path / "free", "truncation", 40, 0)[
        "token_ids"
    ]
    (nl,) = tok.convert_tokens_to_ids(["Ċ"])
    # A token the greedy run first picks some steps past the cap: the newline takes over its output
    # row, so the model now writes a newline exactly there and nowhere before.
    j, t = next((j, t) for j, t in enumerate(free) if j > CAP + 1 and t not in free[:j])
    favour_token(hf, nl, like=t)
    engine = Engine(hf, tok, max_batch=1, max_len=256)
    assert _run(engine, tmp_path / "nl", "truncation", 40, 0)["token_ids"][: j + 1] == [*free[:j], nl]

    def thinking(grace: int) -> tuple[int, str]:
        rec = _run(engine, tmp_path / f"g{grace}", "budget_forcing", CAP, grace)
        return rec["thinking_tokens"], rec["generation"]

    n, text = thinking(j + 1 - CAP)  # just enough to reach the newline: the line ends, then the answer
    assert n == j + 1 and text.split("<|im_start|>answer")[0].endswith("\n"), (n, j, text)
    assert thinking(j + 5 - CAP)[0] == j + 1  # more grace changes nothing: the line ended
    assert thinking(j - CAP)[0] == j  # one token short: the answer is forced mid-line, at the cap + grace
    assert thinking(0)[0] == CAP


def test_grace_is_validated_and_fixed_for_a_resumed_run() -> None:
    with pytest.raises(ValueError, match="grace_tokens=-1 must be >= 0"):
        SweepConfig(grace_tokens=-1)
    from s1kit.eval.cli import _FIXED
    from s1kit.eval.methods import sweep

    # Only budget forcing's caps get the grace: wait=K sets no cap, truncation is a hard cut.
    cfg = SweepConfig(budgets=(8,), extensions=(0, 1), max_new_tokens=32, grace_tokens=3)
    assert [(s.label, s.grace_tokens) for s in sweep("budget_forcing", cfg)] == [("cap=8", 3), ("wait=1", 0)]
    assert [s.grace_tokens for m in ("truncation", "token_conditional") for s in sweep(m, cfg)] == [0, 0]

    assert "grace_tokens" in _FIXED
