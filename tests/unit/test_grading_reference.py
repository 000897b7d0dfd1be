"""Grading the benchmarks' own reference solutions must agree with their stated answers."""

from __future__ import annotations

import json
from pathlib import Path

from s1kit.eval.grading import _math_equivalent, extract_answer, grade_batch, is_equivalent, last_boxed


def _rows(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_math500_solutions_grade_correct(shared_data: Path) -> None:
    rows = _rows(shared_data / "eval" / "math500.jsonl")
    assert len(rows) == 500
    preds = [extract_answer(str(r["solution"]), "math500") for r in rows]
    golds = [str(r["answer"]) for r in rows]
    # Through the public path (string shortcut, then math-verify in the pool) ...
    results = grade_batch(preds, golds, "math500", workers=2)
    assert sum(r.correct for r in results) >= 495
    # ... and through math-verify alone, so the check does not rest on exact string matches.
    agree = [p is not None and _math_equivalent(p, g, 5.0)[0] for p, g in zip(preds, golds, strict=True)]
    misses = [(p, g) for p, g, ok in zip(preds, golds, agree, strict=True) if not ok]
    assert len(misses) <= 5, misses


def test_math500_solutions_do_not_match_other_answers(shared_data: Path) -> None:
    # The same grader must reject a solution's answer against another problem's answer (shifted by one),
    # except where the two answers happen to be equal.
    rows = _rows(shared_data / "eval" / "math500.jsonl")[:40]
    preds = [extract_answer(str(r["solution"]), "math500") for r in rows]
    golds = [str(r["answer"]) for r in rows[1:]] + [str(rows[0]["answer"])]
    same = sum(str(a) == str(b) for a, b in zip([r["answer"] for r in rows], golds, strict=True))
    wrong = sum(r.correct for r in grade_batch(preds, golds, "math500", workers=2))
    assert wrong <= same + 2


def test_aime24_solutions_grade_correct(shared_data: Path) -> None:
    rows = _rows(shared_data / "eval" / "aime24.jsonl")
    stated = [r for r in rows if last_boxed(str(r["solution"])) is not None]
    assert len(stated) >= 25  # the solutions that state their answer in a box
    for r in stated:
        pred = extract_answer(str(r["solution"]), "aime24")
        assert is_equivalent(pred, str(r["answer"]), "aime24"), (r["id"], pred, r["answer"])
        assert not is_equivalent(pred, str(int(str(r["answer"])) + 1), "aime24")
