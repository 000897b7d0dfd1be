"""Attempts per second through ``curate --attempts``'s path next to the same prompts through
``s1kit eval``'s runner, on one engine (issue 18: they share the engine path, the ratio should be ~1).

Both sides get one loaded :class:`s1kit.backends` engine (s1kit's own, CPU, one thread), the same
questions (the first ``--n`` rows of a pool file), the same chat prompts and budget (budget forcing at
``--budget`` thinking tokens, ``--answer`` answer tokens, greedy), and both grade what they generate:

- attempts: :class:`s1kit.distill.BackendAttempts` (prompts, batched cached generation into a fresh
  cache file, eval's grading pool);
- baseline: :class:`s1kit.eval.runner.EvalRunner` with method ``budget_forcing`` at the one budget
  (its samples file, its grading pool), into a fresh folder.

Each repeat runs the two back to back (alternating which goes first) after one warm-up each; the table
gives the best of ``--repeats``. "same generations" checks that both produced the same text for every
question. Default model: SmolLM2-135M-Instruct from the real-weights extra (``make test-real``; see
``tests/real/smollm2.py``). Run from the repo root:

    PYTHONPATH=python:. python bench/attempts_throughput.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from s1kit.backends import EngineOptions, load_backend
from s1kit.budget.delimiters import choose_delimiters
from s1kit.curate import load_pool
from s1kit.distill import AttemptsConfig, BackendAttempts, GenerationSettings
from s1kit.eval.methods import SweepConfig
from s1kit.eval.runner import EvalRunner, RunConfig
from s1kit.eval.tasks import Problem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the real-weights SmolLM2)")
    p.add_argument("--pool", default="../shared/data/pool/grade_school_math.jsonl")
    p.add_argument("--n", type=int, default=16, help="questions")
    p.add_argument("--budget", type=int, default=48, help="thinking tokens")
    p.add_argument("--answer", type=int, default=24, help="answer tokens")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = args.model
    if model is None:
        from tests.real.smollm2 import hf_folder, missing_reason

        reason = missing_reason()
        if reason:
            raise SystemExit(reason)
        model = str(hf_folder())
    backend = load_backend(
        "s1kit", model, EngineOptions(device="cpu", max_batch=args.max_batch, max_len=1024)
    )
    rows = [r for r in load_pool([args.pool]).rows if r.question and r.answer][: args.n]
    problems = [Problem("pool", str(r.row), r.question or "", r.answer or "", grading="math") for r in rows]
    settings = GenerationSettings(
        max_thinking_tokens=args.budget,
        max_answer_tokens=args.answer,
        max_new_tokens=args.budget + args.answer,
    )
    sweep = SweepConfig(
        budgets=(args.budget,),
        extensions=(0,),
        max_new_tokens=args.budget + args.answer,
        max_answer_tokens=args.answer,
        temperature=0.0,
    )
    tmp = Path(tempfile.mkdtemp(prefix="attempts_bench_"))
    runs = {"attempts": 0, "eval": 0}

    def attempts() -> dict[int, str]:
        runs["attempts"] += 1
        cache = tmp / f"gen{runs['attempts']}.jsonl"
        cfg = AttemptsConfig(models=(model,), cache_path=cache, settings=settings)
        BackendAttempts(cfg, loaded={model: backend}).attempt(rows)
        texts = [json.loads(x)["text"] for x in cache.read_text().splitlines()]
        return dict(enumerate(texts))

    def evaluate() -> dict[int, str]:
        runs["eval"] += 1
        out = tmp / f"eval{runs['eval']}"
        EvalRunner(
            backend, out, sweep, RunConfig(delimiters=choose_delimiters(backend.tokenizer), grading_workers=1)
        ).run({"pool": problems}, ["budget_forcing"], progress=False)
        recs = [
            json.loads(x)
            for x in (out / "samples" / "pool" / "budget_forcing.jsonl").read_text().splitlines()
        ]
        order = {pr.id: i for i, pr in enumerate(problems)}
        return {order[r["problem_id"]]: r["generation"] for r in recs}

    attempts(), evaluate()  # warm-up
    best = {"attempts": float("inf"), "eval": float("inf")}
    outs: dict[str, Any] = {}
    for rep in range(args.repeats):
        order = [("attempts", attempts), ("eval", evaluate)]
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            outs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    same = outs["attempts"] == outs["eval"]
    n = len(rows)
    a_rate, e_rate = n / best["attempts"], n / best["eval"]
    print(f"model {Path(model).name}, {n} questions from {args.pool}, budget {args.budget}+{args.answer}, ")
    print(f"batch {args.max_batch}, CPU 1 thread, load {os.getloadavg()[0]:.1f}, {platform.node()}")
    print()
    print("| path | questions | best s | attempts/s | vs eval | same generations |")
    print("|---|---|---|---|---|---|")
    print(f"| s1kit eval runner (baseline) | {n} | {best['eval']:.2f} | {e_rate:.2f} | 1.00x | |")
    print(
        f"| curate --attempts (BackendAttempts) | {n} | {best['attempts']:.2f} | {a_rate:.2f} | {a_rate / e_rate:.2f}x | {same} |"
    )
    print()
    print(f"attempts / eval: {a_rate / e_rate:.2f}x")


if __name__ == "__main__":
    main()
