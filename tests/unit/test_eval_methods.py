"""Sweeps, outcome selection (rejection sampling, majority voting), the sample store and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from s1kit.eval.methods import (
    METHODS,
    SweepConfig,
    count_steps,
    needs_more,
    sample_seed,
    select_outcome,
    sweep,
    thinking_text,
)
from s1kit.eval.report import summarize, write_report
from s1kit.eval.runner import SampleStore

CFG = SweepConfig(budgets=(100, 200), extensions=(0, 2), steps=(3,), votes=(1, 3), max_tries=3)


def _rec(**kw: Any) -> dict[str, Any]:
    base = {
        "task": "math500",
        "method": "budget_forcing",
        "key": "cap=100",
        "label": "cap=100",
        "problem_id": "p0",
        "index": 0,
        "extracted": "1",
        "gold": "1",
        "correct": True,
        "thinking_tokens": 50,
        "answer_tokens": 5,
        "forced_tokens": 0,
        "extensions_used": 0,
        "capped": False,
        "steps": 0,
        "generation": "think<|im_start|>answer\nFinal Answer: 1",
        "finish_reason": "eos",
    }
    base.update(kw)
    return base


def test_sweeps_cover_every_method() -> None:
    labels = {m: [s.label for s in sweep(m, CFG)] for m in METHODS}
    assert labels["budget_forcing"] == ["cap=100", "cap=200", "wait=2"]
    assert labels["truncation"] == ["cut=100", "cut=200"]
    assert labels["token_conditional"] == ["tokens=100", "tokens=200"]
    assert labels["step_conditional"] == ["steps=3"]
    assert labels["class_conditional"] == ["class=short", "class=long"]
    assert labels["rejection_sampling"] == ["fit=100", "fit=200"]
    assert labels["majority_voting"] == ["k=1", "k=3"]
    cut = sweep("truncation", CFG)[0]
    assert cut.max_new_tokens == 100 and cut.max_thinking_tokens is None  # a hard cut, nothing forced
    assert sweep("rejection_sampling", CFG)[0].max_thinking_tokens == 101
    assert "100 tokens" in sweep("token_conditional", CFG)[0].instruction
    with pytest.raises(ValueError, match="budget_forcing"):
        sweep("beam_search", CFG)
    with pytest.raises(ValueError, match="budgets"):
        SweepConfig(budgets=(0,))
    with pytest.raises(ValueError, match="max_new_tokens"):
        SweepConfig(budgets=(512, 4096), max_new_tokens=4096)


def test_seeds_are_stable_and_distinct() -> None:
    a = sample_seed(42, "math500", "p0", "rejection_sampling", "fit=100", 0)
    assert a == sample_seed(42, "math500", "p0", "rejection_sampling", "fit=100", 0)
    assert a != sample_seed(42, "math500", "p0", "rejection_sampling", "fit=100", 1)
    assert a != sample_seed(43, "math500", "p0", "rejection_sampling", "fit=100", 0)
    assert 0 <= a < 2**63


def test_step_counting_looks_at_thinking_only() -> None:
    gen = "Step 1: a\nStep 2: b\n**Step 3.** c\nnot a Step 4: here<|im_start|>answer\nStep 5: no"
    assert thinking_text(gen).endswith("here")
    assert count_steps(gen) == 3
    # A run with custom delimiters counts steps up to its own think end.
    custom = "Step 1: a\nStep 2: b\n<end>\nStep 3: answer"
    assert count_steps(custom) == 3 and count_steps(custom, ["<end>"]) == 2
    assert thinking_text(custom, ["<end>"]) == "Step 1: a\nStep 2: b\n"


def test_rejection_sampling_takes_the_first_try_that_fits() -> None:
    s = sweep("rejection_sampling", CFG)[0]  # budget 100, 3 tries
    tries = [
        _rec(index=0, thinking_tokens=101, correct=True),
        _rec(index=1, thinking_tokens=80, correct=False),
    ]
    assert not needs_more(s, tries)
    o = select_outcome(s, tries)
    assert o is not None and o["generations"] == 2 and o["thinking_tokens"] == 80 and not o["correct"]
    assert needs_more(s, tries[:1])
    # No try fits within the cap on tries: the last one stands, and Control will count it as a miss.
    misses = [_rec(index=i, thinking_tokens=101) for i in range(3)]
    assert not needs_more(s, misses)
    o = select_outcome(s, misses)
    assert o is not None and o["generations"] == 3 and o["thinking_tokens"] == 101


def test_majority_voting_uses_the_first_k_samples() -> None:
    k1, k3 = sweep("majority_voting", CFG)
    votes = [
        _rec(index=0, extracted="2", correct=False, thinking_tokens=10),
        _rec(index=1, extracted="1", correct=True, thinking_tokens=20),
        _rec(index=2, extracted=" 1", correct=True, thinking_tokens=30),
    ]
    o1, o3 = select_outcome(k1, votes), select_outcome(k3, votes)
    assert o1 is not None and o3 is not None
    assert (o1["correct"], o1["thinking_tokens"]) == (False, 10)
    assert (o3["correct"], o3["thinking_tokens"], o3["generations"]) == (True, 60, 3)
    # A tie goes to the answer seen first.
    tie = [_rec(index=0, extracted="5", correct=False), _rec(index=1, extracted="1", correct=True)]
    o = select_outcome(sweep("majority_voting", SweepConfig(votes=(2,)))[0], tie)
    assert o is not None and o["extracted"] == "5"


def test_sample_store_drops_a_torn_line_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    store = SampleStore(path)
    store.append([_rec(index=0), _rec(index=1)])
    assert [r["index"] for r in SampleStore(path).get("cap=100", "p0")] == [0, 1]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_rec(index=2))[:30])  # the crash
    again = SampleStore(path)
    assert len(again.get("cap=100", "p0")) == 2
    assert path.read_text(encoding="utf-8").endswith("\n")  # the torn part is gone
    again.append([_rec(index=2)])
    assert len(SampleStore(path).get("cap=100", "p0")) == 3


def test_summary_rows_and_metrics_by_hand(tmp_path: Path) -> None:
    settings = {"budget_forcing": sweep("budget_forcing", CFG)}
    recs = [
        # cap=100: p0 correct (50 tokens), p1 wrong (100 tokens) -> acc .5, mean 75, control 2/2
        _rec(key="cap=100", problem_id="p0", thinking_tokens=50, correct=True),
        _rec(key="cap=100", problem_id="p1", thinking_tokens=100, correct=False),
        # cap=200: both correct, 150 and 250 tokens -> acc 1, mean 200, control 1/2
        _rec(key="cap=200", problem_id="p0", thinking_tokens=150, correct=True),
        _rec(key="cap=200", problem_id="p1", thinking_tokens=250, correct=True),
        # wait=2: one correct at 300 tokens, one wrong at 500 -> acc .5, mean 400, no bounds
        _rec(key="wait=2", problem_id="p0", thinking_tokens=300, correct=True),
        _rec(key="wait=2", problem_id="p1", thinking_tokens=500, correct=False),
    ]
    points, methods = summarize(recs, settings)
    assert [(p.label, p.accuracy, p.mean_thinking_tokens) for p in points] == [
        ("cap=100", 0.5, 75.0),
        ("cap=200", 1.0, 200.0),
        ("wait=2", 0.5, 400.0),
    ]
    assert points[0].control == 1.0 and points[1].control == 0.5 and points[2].control is None
    # budget error: cap=100: (|50-100| + |100-100|)/100/2 = .25; cap=200: (50 + 50)/200/2 = .25
    assert points[0].budget_error == pytest.approx(0.25) and points[1].budget_error == pytest.approx(0.25)
    (m,) = methods
    assert m.control == pytest.approx(3 / 4)
    assert m.performance == 1.0
    assert m.budget_error == pytest.approx(0.25)
    # slopes (points per 1k tokens): (100-50)/125*1000 = 400; (50-50)/325 = 0; (50-100)/200*1000 = -250
    assert m.scaling == pytest.approx((400 + 0 - 250) / 3)


def test_report_files_from_stored_samples(tmp_path: Path) -> None:
    run = {
        "model": "m",
        "tasks": ["math500", "aime24"],
        "methods": ["budget_forcing"],
        "seed": 1,
        "style": "s1",
        "sweep": {k: list(v) if isinstance(v, tuple) else v for k, v in CFG.__dict__.items()},
    }
    (tmp_path / "run.json").write_text(json.dumps(run), encoding="utf-8")
    for task in ("math500", "aime24"):
        recs = [
            _rec(task=task, key=k, label=k, problem_id=f"p{i}", thinking_tokens=t, correct=i == 0)
            for k, t in (("cap=100", 90), ("cap=200", 180))
            for i in range(2)
        ]
        SampleStore(tmp_path / "samples" / task / "budget_forcing.jsonl").append(recs)
    paths = write_report(tmp_path)
    assert set(paths) == {"summary_csv", "metrics_csv", "figure_png", "figure_svg", "report_md"}
    md = paths["report_md"].read_text(encoding="utf-8")
    assert "| aime24 | budget_forcing | 2 | 100.0% |" in md and "![scaling](scaling.png)" in md
    assert md.count("### ") == 4  # a correct and an incorrect generation per dataset
    assert paths["figure_png"].read_bytes()[:4] == b"\x89PNG"
    svg = paths["figure_svg"].read_text(encoding="utf-8")
    assert svg.count("mean thinking tokens") == 2  # one panel per dataset, labelled axes
