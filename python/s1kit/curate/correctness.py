"""Trace correctness: drop rows whose trace's final answer disagrees with the reference answer.

Grading is :mod:`s1kit.eval`'s: ``extract_answer(trace, task)`` pulls the final answer out of the trace
and ``is_equivalent(prediction, gold, task)`` compares it (math-verify for free-form math, exact
integers for AIME, letters for multiple choice). ``grade_batch`` is the same grader run in worker
processes, used when ``workers > 0``.

A trace is graded only when it states its final answer explicitly (a ``\\boxed{}`` or "Final Answer"
in its answer segment): reference solutions often end without one, and ``extract_answer``'s
last-number fallback would then "disagree" with a correct solution. Such rows, and rows without a
trace or answer, are not graded and pass (``strict=True`` drops the unstated ones instead); the stage
note counts them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from s1kit.curate.schema import Row

_LETTER_RE = re.compile(r"\s*\(?([A-Ea-e])\)?\s*\.?\s*")
_FINAL_RE = re.compile(r"(?i)final answer")


@dataclass
class CorrectnessResult:
    drops: dict[int, tuple[str, dict[str, Any]]]
    graded: int = 0
    ungraded: dict[str, int] = field(default_factory=dict)

    def note(self) -> str:
        parts = [f"graded {self.graded}"] + [f"{k} {v}" for k, v in sorted(self.ungraded.items())]
        return ", ".join(parts)


def _grading() -> Any:
    try:
        from s1kit.eval import grading
    except ImportError as e:  # pragma: no cover - only when s1kit.eval is absent from the install
        raise ImportError(
            "the trace-correctness stage needs s1kit.eval (extract_answer, is_equivalent); install the "
            'full s1kit package or skip the stage ("correctness" in CurateConfig.skip; s1kit curate: '
            "--skip-stage correctness)"
        ) from e
    return grading


def task_for(row: Row, grading: Any) -> str:
    """The grading task: letter answers -> ``gpqa`` (letters), integer AIME answers -> ``aime24``,
    AMC -> ``amc23``, everything else -> ``math``."""
    answer = row.answer or ""
    if _LETTER_RE.fullmatch(answer) and answer.strip().strip("().").upper() in "ABCD":
        return "gpqa"
    src = (row.source or "").lower()
    if "aime" in src and grading.as_integer(answer) is not None:
        return "aime24"
    if "amc" in src:
        return "amc23"
    return "math"


def states_final_answer(trace: str, grading: Any) -> bool:
    segment = grading.answer_segment(trace)
    return grading.last_boxed(segment) is not None or _FINAL_RE.search(segment) is not None


def check_traces(
    rows: list[Row], *, strict: bool = False, workers: int = 0, timeout_s: float = 5.0, progress: bool = False
) -> CorrectnessResult:
    """Grade every row that has a trace with an explicit final answer and a reference answer."""
    grading = _grading()
    res = CorrectnessResult({})
    todo: list[tuple[Row, str, str]] = []  # (row, task, extracted answer)
    for r in tqdm(rows, desc="trace answers", disable=not progress, unit="row"):
        if not r.trace or not r.answer:
            res.ungraded["no trace/answer"] = res.ungraded.get("no trace/answer", 0) + 1
            continue
        if not states_final_answer(r.trace, grading):
            if strict:
                res.drops[r.row] = ("trace states no final answer", {})
            else:
                res.ungraded["no stated final answer"] = res.ungraded.get("no stated final answer", 0) + 1
            continue
        task = task_for(r, grading)
        pred = grading.extract_answer(r.trace, task)
        if pred is None:
            res.drops[r.row] = ("no final answer in trace", {"task": task})
            continue
        todo.append((r, task, pred))
    if todo and (workers > 0 or threading.current_thread() is not threading.main_thread()):
        # In-process grading needs the main thread (math-verify's time limits use signals).
        verdicts = grading.grade_batch(
            [p for _, _, p in todo],
            [r.answer for r, _, _ in todo],
            [t for _, t, _ in todo],
            workers=max(1, workers),
            timeout_s=timeout_s,
        )
    else:
        verdicts = [
            grading.grade_one(p, r.answer, t, timeout_s)
            for r, t, p in tqdm(todo, desc="grading", disable=not progress, unit="row")
        ]
    for (r, task, pred), g in zip(todo, verdicts, strict=True):
        res.graded += 1
        detail = {"task": task, "trace_answer": pred[:200], "reference": (r.answer or "")[:200]}
        if g.correct:
            continue
        if g.timed_out:
            res.drops[r.row] = (
                f"grading timed out after {timeout_s:g}s (answer not verified)",
                {**detail, "timed_out": True},
            )
        elif g.error:
            res.drops[r.row] = (f"grading failed: {g.error}", detail)
        else:
            res.drops[r.row] = ("trace answer disagrees with reference", detail)
    return res
