"""``s1kit demo``: the whole s1 recipe in miniature on a CPU, with nothing downloaded.

Generates a synthetic reasoning pool in four task families and a held-out test set, curates it with
``s1kit curate``, trains a tiny Qwen2-architecture model from scratch with ``s1kit train`` (FSDP over
gloo, two processes), evaluates it with ``s1kit eval`` (budget forcing at several thinking budgets and
with "Wait" extensions; truncation and token-conditional prompting as the baselines) and writes one report. A rerun reuses finished stages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Run the s1 recipe end to end on a CPU: synthetic pool, curate, train from scratch, eval, report."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from s1kit.demo.pipeline import SIZES

    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    p.add_argument(
        "--size", choices=sorted(SIZES), default="full", help="full: the ten-minute run; small: the CI test's"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the sampling")
    p.add_argument("--nproc", type=int, default=2, help="training processes (FSDP over gloo; default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from s1kit.demo.pipeline import Demo

    if args.nproc < 1:
        raise ValueError(f"--nproc {args.nproc}: use 1 or more")
    demo = Demo(args.out, args.size, args.seed, args.nproc, progress=not args.no_progress)
    result = demo.run()
    total = sum(result["timings"].values())
    print(f"\ndemo finished ({total:.0f}s of stage time); report: {result['report']}")
    return 0
