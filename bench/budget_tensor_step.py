"""CPU cost of one budget step: the tensor mirror (s1kit.budget.tensor, eager torch ops) vs the Rust core.

Honest scope: on a CPU the tensor step is a few dozen small torch ops and is expected to be slower than
the Rust core's single call; it exists to run inside a CUDA graph, where its cost is GPU kernel time and
no host synchronisation (measure that with bench/decode.py's GPU part). This script measures only the
CPU figures, with the same s1-style specs and planted delimiters as bench/budget_step.py, and checks
that both produce the same overrides. Run: ``python bench/budget_tensor_step.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "python"))

from bench.budget_step import SPEC, streams  # noqa: E402
from s1kit.budget import BudgetBatch, BudgetSpec  # noqa: E402
from s1kit.budget.tensor import TensorBudget  # noqa: E402


def fresh(b: int) -> BudgetBatch:
    spec = BudgetSpec(**SPEC)
    batch = BudgetBatch(b, max_rollback=0)
    for i in range(b):
        batch.insert(i, spec)
    return batch


def time_core(samples: np.ndarray) -> tuple[float, np.ndarray]:
    steps, b = samples.shape
    batch = fresh(b)
    out = np.empty(b, np.int32)
    outs = np.empty((steps, b), np.int32)
    t0 = time.perf_counter()
    for s in range(steps):
        batch.step(samples[s], out)
        outs[s] = out
    return (time.perf_counter() - t0) / steps, outs


def time_tensor(samples: np.ndarray) -> tuple[float, np.ndarray]:
    steps, b = samples.shape
    tb = TensorBudget.from_batch(fresh(b), "cpu", ring=steps)
    tokens = torch.from_numpy(samples.copy())
    outs = np.empty((steps, b), np.int64)
    t0 = time.perf_counter()
    for s in range(steps):
        tb.step(tokens[s])
        outs[s] = tb.override_B.numpy()
    return (time.perf_counter() - t0) / steps, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# budget step on CPU ({platform.processor() or platform.machine()}, torch threads 1)\n")
    print("| batch | Rust core (µs) | tensor step, eager CPU (µs) | tensor / core | same overrides |")
    print("|---:|---:|---:|---:|---|")
    summary = {}
    for b in (1, 64, 256):
        samples = streams(args.steps, b)
        core = [time_core(samples) for _ in range(args.repeats)]
        tens = [time_tensor(samples) for _ in range(args.repeats)]
        c = statistics.median(t for t, _ in core) * 1e6
        t = statistics.median(t for t, _ in tens) * 1e6
        same = bool((core[0][1] == tens[0][1]).all())
        print(f"| {b} | {c:.2f} | {t:.1f} | {t / c:.0f}x | {same} |")
        summary[f"core_us_b{b}"] = round(c, 3)
        summary[f"tensor_cpu_us_b{b}"] = round(t, 2)
        summary[f"same_b{b}"] = same
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
