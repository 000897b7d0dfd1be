"""The verdict on one (prediction, gold) pair and its result type, :class:`GradeResult`.

AIME: equal integers. GPQA: equal letters. ``exact``: the same text up to whitespace. AMC23: equal
integers when both are, else math. MATH500 and ``math``: Hugging Face ``math-verify`` (we do not write a
second LaTeX engine), whose own time limits use ``signal.alarm`` and so work only in a main thread.
:func:`quick_verdict` decides every pair that needs no math-verify; :func:`grade_one` decides any pair in
this process.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from s1kit.eval.grading.answers import (
    CHOICE_TASKS,
    INTEGER_TASKS,
    as_integer,
    check_task,
    choice_letter,
    plain_text,
)


@dataclass(frozen=True)
class GradeResult:
    """The outcome of grading one (prediction, gold) pair.

    ``timed_out`` is set when math-verify's own time limit or the pool's hard per-item limit ended the
    comparison (then ``correct`` is False unless an earlier comparison had already succeeded);
    ``seconds`` is the wall time spent on the item; ``error`` names a worker failure, if any.
    """

    correct: bool
    timed_out: bool = False
    seconds: float = 0.0
    error: str | None = None


def _soft_timeout(timeout_s: float | None) -> int | None:
    # math-verify's signal.alarm takes whole seconds and applies per stage (gold parse, prediction parse,
    # comparison). Slow stages are nearly always the comparison, so each stage gets most of the per-item
    # limit; an item whose stages add up past it is ended by the pool's hard limit instead.
    if timeout_s is None:
        return None
    return max(1, math.ceil(0.8 * timeout_s))


def _math_equivalent(prediction: str, gold: str, timeout_s: float | None) -> tuple[bool, bool]:
    """(equivalent, timed_out) by math-verify; must run in a main thread when ``timeout_s`` is set."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    soft = _soft_timeout(timeout_s)
    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    timed_out = False

    def parse_boxed(s: str) -> list[object]:
        nonlocal timed_out
        try:
            parsed: list[object] = parse(
                "\\boxed{" + s + "}", list(config), parsing_timeout=soft, raise_on_error=True
            )
            return parsed
        except TimeoutException:
            timed_out = True
        except Exception:  # unparseable: math-verify's own policy is "no extraction"
            pass
        return []

    gold_parsed = parse_boxed(gold)
    if not gold_parsed or timed_out:
        return False, timed_out
    pred_parsed = parse_boxed(prediction)
    for g in gold_parsed:
        for p in pred_parsed:
            try:
                if verify(g, p, timeout_seconds=soft, raise_on_error=True):
                    return True, timed_out
            except TimeoutException:
                timed_out = True
            except Exception:
                pass
    return False, timed_out


def quick_verdict(prediction: str | None, gold: str, task: str) -> bool | None:
    """The verdict when it needs no math-verify (``None`` otherwise)."""
    if prediction is None:
        return False
    if task == "exact":
        return plain_text(prediction) == plain_text(gold)
    if task in CHOICE_TASKS:
        letter = choice_letter(prediction)
        gold_letter = choice_letter(gold)
        if gold_letter is None:
            raise ValueError(f"gold={gold!r} is not a choice letter A-D; gpqa golds must be letters")
        return letter == gold_letter
    if task in INTEGER_TASKS:
        p, g = as_integer(prediction), as_integer(gold)
        if g is None:
            raise ValueError(f"gold={gold!r} is not an integer; {task} golds must be integers")
        return p is not None and p == g
    if prediction.strip() == gold.strip() and gold.strip():
        return True
    # Word answers ("\text{Evelyn}"): math-verify reads bare words as products of symbols, so "Evelyn"
    # would not match "\text{Evelyn}"; compare the words themselves.
    if (
        ("\\text" in gold or "\\text" in prediction)
        and re.search(r"[A-Za-z]{2}", plain_text(gold))
        and plain_text(prediction).lower() == plain_text(gold).lower()
    ):
        return True
    if task == "amc23":
        p, g = as_integer(prediction), as_integer(gold)
        if p is not None and g is not None:
            return p == g
    return None


def grade_one(prediction: str | None, gold: str, task: str, timeout_s: float | None = 5.0) -> GradeResult:
    """Grade one pair in this process (math-verify's ``signal.alarm`` limits need the main thread)."""
    check_task(task)
    t0 = time.perf_counter()
    fast = quick_verdict(prediction, gold, task)
    if fast is not None:
        return GradeResult(fast, False, time.perf_counter() - t0)
    assert prediction is not None
    ok, timed_out = _math_equivalent(prediction, gold, timeout_s)
    return GradeResult(ok, timed_out, time.perf_counter() - t0)
