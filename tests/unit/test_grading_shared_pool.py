"""The process-wide grading pool (``is_equivalent`` off the main thread) is closed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import threading

    from s1kit.eval.grading import is_equivalent, pool

    close = pool.GradingPool.close

    def reporting_close(self):
        pids = [w.process.pid for w in self._pool]
        close(self)
        print("closed", pids, flush=True)

    pool.GradingPool.close = reporting_close
    out = []
    t = threading.Thread(target=lambda: out.append(is_equivalent("\\\\frac{2}{4}", "0.5", "math500")))
    t.start()
    t.join(timeout=120)
    print("graded", out, flush=True)
    """
)


def test_the_shared_pool_is_closed_when_the_interpreter_exits() -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The worker graded the pair, then the atexit hook (not the test) closed the pool with its worker.
    assert lines[0] == "graded [True]"
    assert len(lines) == 2 and lines[1].startswith("closed [") and lines[1] != "closed []", lines


def test_close_shared_pool_stops_the_worker_and_a_later_call_starts_another() -> None:
    import threading

    from s1kit.eval.grading import batch, close_shared_pool, is_equivalent

    def off_main() -> bool:
        out: list[bool] = []
        t = threading.Thread(target=lambda: out.append(is_equivalent("\\sqrt{4}", "2", "math500")))
        t.start()
        t.join(timeout=120)
        return out == [True]

    assert off_main()
    shared = batch._SHARED_POOL
    assert shared is not None
    workers = [w.process for w in shared._pool]
    assert workers and all(p.is_alive() for p in workers)
    close_shared_pool()
    assert batch._SHARED_POOL is None and not any(p.is_alive() for p in workers)
    close_shared_pool()  # idempotent
    assert off_main()
    close_shared_pool()
