"""The attempts stage: reference models try each surviving question; their graded verdicts become the
correctness columns the difficulty stage reads.

Curation never imports decoding (STYLE.md), so this module only defines what the stage needs, the
:class:`AttemptsRunner` protocol, and how its verdicts enter the pipeline. The implementation that
generates and grades (one engine backend per model, batched, cached on disk) is
:class:`s1kit.distill.attempts.BackendAttempts`; ``s1kit curate --attempts`` wires it in, and a library
user passes any runner to :func:`s1kit.curate.run_pipeline` (``attempts=``).

Verdicts, one per attempt: ``correct``, ``wrong`` (an answer that disagrees with the reference),
``no_answer`` (no final answer could be extracted), ``timeout`` (grading hit its time limit: not
verified either way), ``grading_error`` (the grader failed) and ``prompt_too_long`` (the prompt left
the engine no room to generate). A question counts as solved by a model when any of its attempts is
``correct``; the column ``correct[model]`` (``model`` exactly as given) is then true, else false.
Rows without a question or a reference answer are not attempted and get no column.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from s1kit.curate.schema import Row

VERDICTS: tuple[str, ...] = ("correct", "wrong", "no_answer", "timeout", "grading_error", "prompt_too_long")

# {input row: {model: [verdict per attempt]}}
Verdicts = dict[int, dict[str, list[str]]]


@runtime_checkable
class AttemptsRunner(Protocol):
    """Generates and grades ``attempts_per_question`` attempts per row for each of ``models``."""

    models: tuple[str, ...]
    attempts_per_question: int

    def attempt(self, rows: Sequence[Row]) -> Verdicts:
        """Verdicts for every row given (each has a question and a reference answer), every model,
        ``attempts_per_question`` each, in attempt order."""
        ...

    def describe(self) -> str:
        """One line for the stage table: what was generated now and what came from the cache."""
        ...


@dataclass
class AttemptsOutcome:
    """Per row: the verdicts recorded in the manifest; and the counts for the stage note."""

    verdicts: Verdicts
    solved: Counter[str] = field(default_factory=Counter)  # model -> questions solved
    counts: Counter[str] = field(default_factory=Counter)  # verdict -> attempts
    not_attempted: int = 0


def run_attempts(rows: list[Row], runner: AttemptsRunner) -> AttemptsOutcome:
    """Attempt every row with a question and an answer; write ``row.correct[model]`` for each."""
    todo = [r for r in rows if r.question and r.answer]
    verdicts = runner.attempt(todo) if todo else {}
    out = AttemptsOutcome(verdicts, not_attempted=len(rows) - len(todo))
    for r in todo:
        per_model = verdicts.get(r.row)
        if per_model is None or set(per_model) != set(runner.models):
            raise RuntimeError(f"the attempts runner returned no verdicts for row {r.row} and every model")
        for model, vs in per_model.items():
            bad = [v for v in vs if v not in VERDICTS]
            if bad or len(vs) != runner.attempts_per_question:
                raise RuntimeError(f"row {r.row}, model {model}: verdicts {vs} are not {VERDICTS}")
            r.correct[model] = "correct" in vs
            out.solved[model] += r.correct[model]
            out.counts.update(vs)
    return out


def note(outcome: AttemptsOutcome, runner: AttemptsRunner, attempted: int) -> str:
    """The stage-table note: per model, questions solved; attempts by verdict; the runner's line."""
    solved = ", ".join(f"{m} solved {outcome.solved[m]}/{attempted}" for m in runner.models)
    verdicts = " ".join(f"{v} {outcome.counts[v]}" for v in VERDICTS if outcome.counts[v])
    parts = [solved, f"attempts: {verdicts or 'none'}", runner.describe()]
    if outcome.not_attempted:
        parts.append(f"{outcome.not_attempted} without question/answer not attempted")
    return "; ".join(p for p in parts if p)
