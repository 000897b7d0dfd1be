"""Evaluation: benchmark loaders, answer grading, test-time-scaling methods, metrics and reports.

Files: ``grading/`` (extract_answer, is_equivalent, grade_batch, the hang-proof parallel grader; its
docstring names each module), ``tasks.py`` (AIME24/25, AMC23, MATH500, GPQA Diamond), ``methods.py`` (the
sweeps of each test-time-scaling method), ``samples.py`` (**the samples JSONL schema**:
:class:`~s1kit.eval.samples.SampleRecord`, documented field by field, and the resumable store),
``runner.py`` (generation on any :class:`s1kit.backends.Backend`, in-loop or re-prompted forcing,
grading, records), ``metrics.py`` (Control, Scaling, Performance, Budget error), ``report.py`` (tables,
figure, samples), ``cli.py`` (``s1kit eval``; it loads the engine ``--engine`` names, this package
names none).

Importing this package is light (no torch): grading is usable by curation without the decode stack.
"""

from __future__ import annotations

from s1kit.eval.grading import (
    TASKS,
    GradeResult,
    GradingPool,
    answer_segment,
    extract_answer,
    grade_batch,
    is_equivalent,
)

__all__ = [
    "TASKS",
    "GradeResult",
    "GradingPool",
    "answer_segment",
    "extract_answer",
    "grade_batch",
    "is_equivalent",
]
