"""``s1kit curate --attempts`` from real pool files with a real checkpoint (issue 18, as measured):
SmolLM2-135M-Instruct attempts a handful of rows of ``../shared/data/pool`` (the first rows of two real
pool files: questions and answers, no attempts, no traces) on s1kit's own engine. The run completes,
the manifest gives every input row a decision and every row that reached the attempts stage its
verdicts and the model's name, and the selection differs from the same run without attempts exactly
by the rows the attempts solved (at least one: the model gets ``grade_school_math.jsonl`` line 4
right). Run with ``make test-real``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from s1kit.cli import main

pytestmark = pytest.mark.real

FILES = {"grade_school_math.jsonl": 8, "minerva.jsonl": 4}


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    # Two cores shared with other jobs: more threads only spin against them.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_attempts_from_real_pool_rows(smollm2_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    for name, n in FILES.items():
        head = (shared_data / "pool" / name).read_text(encoding="utf-8").splitlines()[:n]
        (pool / name).write_text("\n".join(head) + "\n", encoding="utf-8")
    evals = sorted(str(p) for p in (shared_data / "eval").glob("*.jsonl"))
    base = [str(pool), "--eval", *evals, "--k", "100", "--quiet"]
    model = str(smollm2_dir)
    attempts = [
        "--attempts",
        model,
        "--attempts-max-thinking-tokens",
        "48",
        "--attempts-max-answer-tokens",
        "16",
    ]
    engine = ["--device", "cpu", "--max-batch", "16", "--max-len", "1024"]
    assert main(["curate", *base, "--out", str(tmp_path / "plain")]) == 0
    assert main(["curate", *base, "--out", str(tmp_path / "att"), *attempts, *engine]) == 0

    total = sum(FILES.values())
    manifest = _lines(tmp_path / "att" / "manifest.jsonl")
    assert [d["row"] for d in manifest] == list(range(total))
    reached = [d for d in manifest if d["stage"] in ("difficulty", "diversity")]
    assert reached and all(set(d["attempts"]) == {model} and len(d["attempts"][model]) == 1 for d in reached)
    early = [d for d in manifest if d not in reached]
    assert all("attempts" not in d for d in early)
    solved = {d["row"] for d in reached if d["attempts"][model] == ["correct"]}
    assert solved, "SmolLM2 solves grade_school_math.jsonl line 4 at this budget"
    assert all(
        d["stage"] == "difficulty" and d["detail"]["solved_by"] == [model]
        for d in manifest
        if d["row"] in solved
    )

    plain = {s["input_row"] for s in _lines(tmp_path / "plain" / "selected.jsonl")}
    with_attempts = {s["input_row"] for s in _lines(tmp_path / "att" / "selected.jsonl")}
    assert plain - with_attempts == solved and with_attempts <= plain
    selected = _lines(tmp_path / "att" / "selected.jsonl")
    assert all(json.loads(s["correct"]) == {model: False} for s in selected)
