"""Grading many pairs, and one pair from any thread: :func:`grade_batch` and :func:`is_equivalent`.

Both use :class:`~s1kit.eval.grading.pool.GradingPool` where math-verify's limits cannot be trusted
in-process. :func:`is_equivalent` called off the main thread grades in one process-wide one-worker
pool, started on first need and closed when the interpreter exits (``atexit``), or earlier by
:func:`close_shared_pool`.
"""

from __future__ import annotations

import atexit
import math
import threading
from collections.abc import Sequence

from s1kit.eval.grading.answers import check_task
from s1kit.eval.grading.pool import GradingPool
from s1kit.eval.grading.verdict import GradeResult, grade_one, quick_verdict

_SHARED_POOL: GradingPool | None = None
_SHARED_POOL_LOCK = threading.Lock()


def _shared_pool(timeout_s: float) -> GradingPool:
    """The process-wide pool (caller holds the lock); a new per-item limit replaces the pool."""
    global _SHARED_POOL
    if _SHARED_POOL is not None and _SHARED_POOL.timeout_s != float(timeout_s):
        _SHARED_POOL.close()
        _SHARED_POOL = None
    if _SHARED_POOL is None:
        _SHARED_POOL = GradingPool(workers=1, timeout_s=timeout_s)
    return _SHARED_POOL


def close_shared_pool() -> None:
    """Stop the process-wide pool's worker, if one was started; idempotent. Registered with ``atexit``."""
    global _SHARED_POOL
    with _SHARED_POOL_LOCK:
        if _SHARED_POOL is not None:
            _SHARED_POOL.close()
            _SHARED_POOL = None


atexit.register(close_shared_pool)


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
    fast = quick_verdict(prediction, gold, task)
    if fast is not None:
        return fast
    if threading.current_thread() is threading.main_thread():
        return grade_one(prediction, gold, task, timeout_s).correct
    with _SHARED_POOL_LOCK:
        pool = _shared_pool(timeout_s)
        return pool.grade([(prediction, gold, task)])[0].correct


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
