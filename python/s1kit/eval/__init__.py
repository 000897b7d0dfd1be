"""Evaluation: benchmark loaders, answer grading, test-time-scaling methods, metrics and reports.

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
