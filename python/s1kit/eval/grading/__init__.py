"""Answer extraction and grading for the s1kit benchmarks.

``extract_answer(text, task)`` pulls the final answer out of a generation; ``is_equivalent(prediction, gold,
task)`` decides whether it matches the reference. Math equivalence is Hugging Face ``math-verify`` (we do
not write a second LaTeX engine); this package adds what it lacks:

- the answer-segment split: only the text after the end-of-thinking delimiter (``<|im_start|>answer`` or
  ``</think>``) is searched when the delimiter is present;
- exact integer grading for AIME (leading zeros and a trailing ``.0`` allowed) and letter grading for GPQA;
- grading that can never hang a run: :class:`GradingPool` grades in worker processes (each worker runs
  math-verify in its own main thread, where its ``signal.alarm`` time limits work) and kills and replaces a
  worker whose item runs past the hard per-item limit, so one pathological answer costs at most
  ``timeout_s`` and is reported as a time-out;
- parallel batch grading (:func:`grade_batch`).

Task names: ``aime24``, ``aime25``, ``amc23``, ``math500``, ``gpqa``, and ``math`` for any other
free-form math answer (graded like MATH500).

Where each concern lives, imports running one way (each module uses only those above it):
``answers.py`` (task names, answer segment, extraction, answer forms) <- ``verdict.py``
(:class:`GradeResult`, the verdict on one pair, :func:`grade_one`) <- ``pool.py`` (:class:`GradingPool`,
the hang-proof worker processes) <- ``batch.py`` (:func:`grade_batch`, :func:`is_equivalent`, the
process-wide pool closed at exit). This module only re-exports.
"""

from __future__ import annotations

from s1kit.eval.grading.answers import (
    ANSWER_DELIMITERS,
    CHOICE_TASKS,
    GRADING_MODES,
    INTEGER_TASKS,
    TASKS,
    answer_segment,
    as_integer,
    check_task,
    choice_letter,
    extract_answer,
    last_boxed,
    plain_text,
)
from s1kit.eval.grading.batch import close_shared_pool, grade_batch, is_equivalent
from s1kit.eval.grading.pool import GradingError, GradingPool
from s1kit.eval.grading.verdict import GradeResult, grade_one, quick_verdict
from s1kit.eval.grading.verdict import _math_equivalent as _math_equivalent  # the reference test reads it

__all__ = [
    "ANSWER_DELIMITERS",
    "CHOICE_TASKS",
    "GRADING_MODES",
    "INTEGER_TASKS",
    "TASKS",
    "GradeResult",
    "GradingError",
    "GradingPool",
    "answer_segment",
    "as_integer",
    "check_task",
    "choice_letter",
    "close_shared_pool",
    "extract_answer",
    "grade_batch",
    "grade_one",
    "is_equivalent",
    "last_boxed",
    "plain_text",
    "quick_verdict",
]
