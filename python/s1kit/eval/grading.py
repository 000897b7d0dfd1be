"""Answer extraction and grading for the s1kit benchmarks.

``extract_answer(text, task)`` pulls the final answer out of a generation; ``is_equivalent(prediction, gold,
task)`` decides whether it matches the reference. Math equivalence is Hugging Face ``math-verify`` (we do
not write a second LaTeX engine); this module adds what it lacks:

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
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence

from s1kit.eval.grading_pool import GradeResult, GradingPool

TASKS: tuple[str, ...] = ("aime24", "aime25", "amc23", "math500", "gpqa", "math", "exact")
# Grading modes that are not benchmarks: ``math`` (math-verify) and ``exact`` (the same text, up to
# whitespace and a trailing period; for answers such as "1 2 5 9" that math-verify would read as a product).
GRADING_MODES: tuple[str, ...] = ("math", "exact")
INTEGER_TASKS = frozenset({"aime24", "aime25"})
CHOICE_TASKS = frozenset({"gpqa"})

# End-of-thinking delimiters (s1 style, then think-tags style). The answer segment starts after the last one.
ANSWER_DELIMITERS: tuple[str, ...] = ("<|im_start|>answer", "</think>")
_CHOICE_LETTERS = "ABCD"


def check_task(task: str) -> str:
    """Return ``task`` if it is a known task name, else raise ``ValueError`` naming the valid ones."""
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; use one of {', '.join(TASKS)}")
    return task


# --------------------------------------------------------------------------------------------- extraction


def answer_segment(text: str) -> str:
    """The part of a generation after the last end-of-thinking delimiter, or all of it when none is present."""
    best = -1
    best_len = 0
    for delim in ANSWER_DELIMITERS:
        i = text.rfind(delim)
        if i > best:
            best, best_len = i, len(delim)
    return text if best < 0 else text[best + best_len :]


_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)\b")


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (nested braces; also ``\fbox``, ``\framebox`` and
    the brace-less ``\boxed 5``). An unterminated last box (a truncated generation) is skipped in favour
    of the one before it."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        i = start
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                c = text[j]
                if c == "{" and text[j - 1] != "\\":
                    depth += 1
                elif c == "}" and text[j - 1] != "\\":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
            continue  # unterminated: try the previous box
        if i > start:  # "\boxed 5": one token up to a space, "$" or end
            m = re.match(r"[^\s$]+", text[i:])
            if m:
                return m.group(0).rstrip(".")
    return None


_FINAL_ANSWER_RE = re.compile(r"final answer\s*(?:is)?\s*[:：]?", re.IGNORECASE)
# Integers (with optional thousands separators), decimals and simple fractions.
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def _clean_inline(ans: str) -> str:
    ans = ans.strip()
    ans = re.sub(r"^\*+|\*+$", "", ans).strip().rstrip(".").strip()  # markdown bold, full stop
    if ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans.strip("$").strip()
    if ans.startswith("\\(") and ans.endswith("\\)"):
        ans = ans[2:-2].strip()
    if ans.startswith("\\[") and ans.endswith("\\]"):
        ans = ans[2:-2].strip()
    return ans.rstrip(".").strip()


def _after_final_answer(segment: str) -> str | None:
    matches = list(_FINAL_ANSWER_RE.finditer(segment))
    if not matches:
        return None
    rest = segment[matches[-1].end() :]
    for line in rest.splitlines():
        ans = _clean_inline(line)
        if ans:
            return ans
    return None


def _last_number(segment: str) -> str | None:
    matches = _NUMBER_RE.findall(segment)
    if not matches:
        return None
    return re.sub(r"\s+", "", matches[-1]).replace(",", "")


# Phrasings that name a multiple-choice letter, most explicit first. Each pattern captures the letter.
_CHOICE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*\(?([A-D])\)?\s*\}?\s*\}"),
    re.compile(
        r"(?i:answer|option|choice)(?:\s+(?i:is|would be|should be))?\s*(?i:option|choice)?\s*[:：]?\s*"
        r"\**\s*(?:\$\s*)?\(?\s*([A-D])\s*\)?(?![A-Za-z])"
    ),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"(?m)^\s*\**\s*\(?([A-D])[).:]?\s*\**\s*$"),
)


def _extract_choice(segment: str) -> str | None:
    fa = _after_final_answer(segment)
    if fa is not None:
        m = re.match(r"\**\s*(?:\\boxed\{)?\s*(?:\\text\{)?\(?([A-D])\)?(?![A-Za-z])", fa)
        if m:
            return m.group(1)
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(segment)
        if found:
            return str(found[-1])
    return None


def extract_answer(text: str, task: str) -> str | None:
    r"""The final answer in ``text`` as a string, or ``None`` when there is none.

    Searched in the answer segment (:func:`answer_segment`): the last ``\boxed{...}``, else the text after
    "Final Answer:", else the last number. For ``gpqa`` the chosen letter ("A".."D") under its common
    phrasings ("The answer is (B)", "Answer: C", ``\boxed{D}``, a lone "(A)").
    """
    check_task(task)
    segment = answer_segment(text)
    if task in CHOICE_TASKS:
        return _extract_choice(segment)
    boxed = last_boxed(segment)
    if boxed is not None:
        return boxed
    fa = _after_final_answer(segment)
    if fa is not None:
        inner = last_boxed(fa)
        return inner if inner is not None else fa
    return _last_number(segment)


# ---------------------------------------------------------------------------------------------- grading

_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathbf|mathrm|boxed|mbox)\s*\{([^{}]*)\}")


def as_integer(answer: str) -> int | None:
    r"""``answer`` as an integer if it spells one: ``"033"``, ``"33.0"``, ``"\textbf{(033) }"``, ``"$1{,}000$"``."""
    s = answer.strip().strip("$").strip()
    prev = None
    while prev != s:
        prev = s
        s = _WRAPPER_RE.sub(r"\1", s)
    s = s.replace("{,}", "").replace("\\!", "").replace("\\,", "").replace(" ", "")
    s = s.strip("()").rstrip(".")
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+", s):
        s = s.replace(",", "")
    # A trailing word is a unit ("204 minutes", "5\text{ ways}"); anything else is not an integer.
    m = re.fullmatch(r"([+-]?\d+)(?:\.0*)?(?:[A-Za-z]+)?", s)
    return int(m.group(1)) if m else None


def _choice_letter(answer: str) -> str | None:
    s = answer.strip().strip("$").strip()
    m = re.fullmatch(r"(?:\\text\{)?\(?\s*([A-Da-d])\s*\)?\}?[.:]?", s)
    if m:
        return m.group(1).upper()
    return _extract_choice(s)


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


def _plain_text(answer: str) -> str:
    s = answer.strip().strip("$")
    prev = None
    while prev != s:
        prev = s
        s = _WRAPPER_RE.sub(r"\1", s)
    return re.sub(r"\s+", " ", s).strip().rstrip(".")


def _fast_path(prediction: str | None, gold: str, task: str) -> bool | None:
    """The verdict when it needs no math-verify (``None`` otherwise)."""
    if prediction is None:
        return False
    if task == "exact":
        return _plain_text(prediction) == _plain_text(gold)
    if task in CHOICE_TASKS:
        letter = _choice_letter(prediction)
        gold_letter = _choice_letter(gold)
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
        and re.search(r"[A-Za-z]{2}", _plain_text(gold))
        and _plain_text(prediction).lower() == _plain_text(gold).lower()
    ):
        return True
    if task == "amc23":
        p, g = as_integer(prediction), as_integer(gold)
        if p is not None and g is not None:
            return p == g
    return None


def grade_one(prediction: str | None, gold: str, task: str, timeout_s: float | None = 5.0) -> GradeResult:
    """Grade one pair in this process (math-verify's ``signal.alarm`` limits need the main thread)."""
    import time

    check_task(task)
    t0 = time.perf_counter()
    fast = _fast_path(prediction, gold, task)
    if fast is not None:
        return GradeResult(fast, False, time.perf_counter() - t0)
    assert prediction is not None
    ok, timed_out = _math_equivalent(prediction, gold, timeout_s)
    return GradeResult(ok, timed_out, time.perf_counter() - t0)


_SHARED_POOL: GradingPool | None = None
_SHARED_POOL_LOCK = threading.Lock()


def is_equivalent(prediction: str | None, gold: str, task: str, *, timeout_s: float = 5.0) -> bool:
    """Whether ``prediction`` (an extracted answer, or ``None``) matches ``gold`` for ``task``.

    AIME: equal integers. GPQA: equal letters. ``exact``: the same text up to whitespace. AMC23: equal integers when both are, else math. MATH500
    and ``math``: math-verify. In the main thread math-verify's own limits apply in-process; from any
    other thread (where signals cannot be used) the comparison runs in a shared one-worker
    :class:`GradingPool` with a hard limit of ``timeout_s``. A time-out grades as not equivalent.
    """
    check_task(task)
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be a positive number of seconds")
    fast = _fast_path(prediction, gold, task)
    if fast is not None:
        return fast
    if threading.current_thread() is threading.main_thread():
        return grade_one(prediction, gold, task, timeout_s).correct
    global _SHARED_POOL
    with _SHARED_POOL_LOCK:
        if _SHARED_POOL is None:
            _SHARED_POOL = GradingPool(workers=1, timeout_s=timeout_s)
        return _SHARED_POOL.grade([(prediction, gold, task)])[0].correct


def grade_batch(
    predictions: Sequence[str | None],
    golds: Sequence[str],
    tasks: str | Sequence[str],
    *,
    workers: int | None = None,
    timeout_s: float = 5.0,
) -> list[GradeResult]:
    """Grade many pairs in parallel worker processes; see :class:`GradingPool`.

    ``tasks`` is one task name for all pairs or one per pair. ``workers=0`` grades serially in this
    process (main thread only), the baseline the benchmark compares against.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"predictions ({len(predictions)}) and golds ({len(golds)}) must have equal length")
    task_list = [tasks] * len(golds) if isinstance(tasks, str) else list(tasks)
    if len(task_list) != len(golds):
        raise ValueError(f"tasks ({len(task_list)}) must be one name or one per pair ({len(golds)})")
    items = list(zip(predictions, golds, task_list, strict=True))
    if workers == 0:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("workers=0 grades in-process and needs the main thread; use workers>=1")
        return [grade_one(p, g, t, timeout_s) for p, g, t in items]
    with GradingPool(workers=workers, timeout_s=timeout_s) as pool:
        return pool.grade(items)


__all__ = [
    "ANSWER_DELIMITERS",
    "TASKS",
    "GradeResult",
    "GradingPool",
    "answer_segment",
    "as_integer",
    "check_task",
    "extract_answer",
    "grade_batch",
    "grade_one",
    "is_equivalent",
    "last_boxed",
]
