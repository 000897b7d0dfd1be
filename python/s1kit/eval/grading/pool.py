"""A process pool that grades answers in parallel and can never hang.

math-verify limits its own work with ``signal.alarm``, which works only in a process's main thread and
cannot interrupt a long computation inside C code (a huge integer power, say). The pool therefore runs
each worker's grading in that worker's main thread (so math-verify's limits apply) *and* watches every
worker from the parent: a worker that reports no result for ``timeout_s`` seconds is killed and replaced,
its item is graded "not equivalent, timed out", and the rest of its chunk goes back to the queue. A
worker that dies (segfault, out of memory) is handled the same way, with the error recorded.

Work goes out in small chunks and results come back one per item, so the per-item deadline is exact and
the pipe round trip is paid once per chunk rather than once per item.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from s1kit.errors import S1kitError
from s1kit.eval.grading.answers import check_task
from s1kit.eval.grading.verdict import GradeResult, grade_one, quick_verdict

# A worker must import sympy and math-verify before its first item; this bounds how long that may take.
_STARTUP_LIMIT_S = 120.0

Item = tuple["str | None", str, str]  # (prediction, gold, task)


class GradingError(S1kitError):
    """The grading workers could not be started."""


def _worker_main(conn: Connection, timeout_s: float) -> None:
    import signal

    # Ctrl-C goes to the parent, which shuts the pool down; a worker must not die mid-message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The first comparison builds math-verify's regexes and sympy's caches (~1 s); pay it before the
    # per-item clock starts.
    grade_one("\\frac{1}{2}", "0.5", "math500", timeout_s)
    conn.send(("ready",))
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for idx, prediction, gold, task in chunk:
            try:
                r = grade_one(prediction, gold, task, timeout_s)
            except Exception as e:  # a bad item must not take the worker down
                r = GradeResult(False, False, 0.0, f"{type(e).__name__}: {e}")
            conn.send((idx, r.correct, r.timed_out, r.seconds, r.error))


@dataclass
class _Worker:
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    started_at: float = field(default_factory=time.monotonic)
    pending: deque[int] = field(default_factory=deque)
    last_progress: float = 0.0


class GradingPool:
    """Grades ``(prediction, gold, task)`` items in ``workers`` processes with a hard per-item limit.

    ``workers=None`` uses one per available CPU. Workers start on first use and are reused across
    :meth:`grade` calls until :meth:`close` (or the end of a ``with`` block). Items that need no
    math-verify (no prediction, AIME integers, GPQA letters, identical strings) are graded in the caller's
    process without a round trip.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout_s: float = 5.0,
        chunk_size: int = 8,
        start_method: str = "spawn",
    ) -> None:
        if workers is None:
            workers = (
                len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            )
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1 (use grade_batch(workers=0) to grade serially)")
        if not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be a positive number of seconds")
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be >= 1")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.chunk_size = chunk_size
        self._ctx: Any = mp.get_context(start_method)
        self._pool: list[_Worker] = []
        self.restarts = 0  # workers killed for running past the limit or found dead

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child, self.timeout_s), daemon=True)
        process.start()
        child.close()
        return _Worker(process=process, conn=parent)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for w in self._pool:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self._pool:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=10)
            w.conn.close()
        self._pool = []

    def grade(self, items: Sequence[Item]) -> list[GradeResult]:
        """One :class:`GradeResult` per item, in order. Never takes much longer than
        ``len(items) * timeout_s / workers`` plus worker start-up, whatever the items contain."""
        results: list[GradeResult | None] = [None] * len(items)
        queue: deque[int] = deque()
        for i, (prediction, gold, task) in enumerate(items):
            check_task(task)
            t0 = time.perf_counter()
            fast = quick_verdict(prediction, gold, task)
            if fast is None:
                queue.append(i)
            else:
                results[i] = GradeResult(fast, False, time.perf_counter() - t0)
        remaining = len(queue)
        if remaining:
            self._run(items, queue, results, remaining)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _fail_head(self, w: _Worker, queue: deque[int], results: list[GradeResult | None], why: str) -> int:
        """Record the in-flight item of a killed/dead worker, requeue the rest; returns items finished."""
        done = 0
        if w.pending:
            idx = w.pending.popleft()
            results[idx] = GradeResult(
                False, why == "timeout", time.monotonic() - w.last_progress, None if why == "timeout" else why
            )
            done = 1
        queue.extendleft(reversed(w.pending))
        w.pending.clear()
        return done

    def _run(
        self, items: Sequence[Item], queue: deque[int], results: list[GradeResult | None], remaining: int
    ) -> None:
        while len(self._pool) < min(self.workers, remaining):
            self._pool.append(self._spawn())
        while remaining:
            now = time.monotonic()
            for w in self._pool:
                if w.ready and not w.pending and queue:
                    chunk = [queue.popleft() for _ in range(min(self.chunk_size, len(queue)))]
                    w.conn.send([(i, *items[i]) for i in chunk])
                    w.pending.extend(chunk)
                    w.last_progress = now
            deadlines = [
                w.last_progress + self.timeout_s if w.ready else w.started_at + _STARTUP_LIMIT_S
                for w in self._pool
                if w.pending or not w.ready
            ]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 0.0
            ready_conns = wait([w.conn for w in self._pool], timeout=wait_s)
            now = time.monotonic()
            for k, w in enumerate(self._pool):
                replace: str | None = None
                if w.conn in ready_conns:
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg[0] == "ready":
                                w.ready = True
                                continue
                            idx, correct, timed_out, seconds, error = msg
                            head = w.pending.popleft()
                            assert head == idx, (head, idx)
                            results[idx] = GradeResult(correct, timed_out, seconds, error)
                            remaining -= 1
                            w.last_progress = now
                    except (EOFError, OSError):
                        replace = f"grading worker died (exit code {w.process.exitcode})"
                if replace is None and w.ready and w.pending and now - w.last_progress >= self.timeout_s:
                    replace = "timeout"
                if replace is None and not w.ready and now - w.started_at >= _STARTUP_LIMIT_S:
                    self.close()
                    raise GradingError(
                        f"a grading worker did not start within {_STARTUP_LIMIT_S:.0f} s; "
                        "check that math-verify imports in a fresh interpreter"
                    )
                if replace is not None:
                    if not w.ready and not w.pending:
                        self.close()
                        raise GradingError(f"a grading worker failed to start: {replace}")
                    remaining -= self._fail_head(w, queue, results, replace)
                    self._kill(w)
                    self.restarts += 1
                    self._pool[k] = self._spawn()
