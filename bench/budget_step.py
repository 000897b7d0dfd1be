"""Decoding overhead of budget forcing per decode step: the Rust core vs Python baselines.

Measures, for batch sizes 1, 64, 256 and 1024, the time one decode step of budget forcing costs:

- ``core``: ``s1kit.budget.BudgetBatch.step`` (override mode), one call for the whole batch;
- ``reference``: the pure-Python reference of the same semantics (tests/unit/budget_reference.py),
  one call per row (history off, so it does no copying);
- ``typical``: a typical per-row Python logits processor (token counting and suffix checks per row in
  Python, then per-row edits of a (B, V) logits tensor), as stacks without a core write it.

Every row has an s1-style spec (two-token delimiter, two-token "Wait", cap 256, 2 extensions) over a
152K vocabulary; the sampled streams are random with planted delimiters, so rows really go through
extensions, the cap and the answer. Run: ``python bench/budget_step.py [--steps N]``.

``--adapters`` adds one row per stack adapter (mask mode: transformers ``HFBudgetForcing``, the vLLM
V1 logits processor, the SGLang custom logit processor): the time per decode step each adds on a
realistic ``(B, 151936)`` float32 logits tensor at batch 1, 64 and 256, next to the core's own mask
call (``core mask``) and the baseline (the typical per-row processor above).
Prints Markdown tables and ends with one JSON line.
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

from s1kit.budget import BudgetBatch, BudgetSpec  # noqa: E402
from tests.unit.budget_reference import RefRow, RefSpec  # noqa: E402

V = 151_936
IM_START, ANSWER, WAIT, COMMA, EOS = 151_644, 9217, 14190, 11, 151_645
SPEC = {
    "vocab_size": V,
    "think_start": [[IM_START, 26865]],
    "think_end": [[IM_START, ANSWER]],
    "eos": [EOS],
    "answer_prefix": [198, IM_START, ANSWER, 198, 19357, 21806, 25],
    "extensions": [[WAIT, COMMA]],
    "max_thinking_tokens": 256,
    "num_extensions": 2,
}


def streams(steps: int, batch: int, seed: int = 0) -> np.ndarray:
    """(steps, batch) int64 samples: random text with the delimiter planted now and then."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 150_000, size=(steps, batch), dtype=np.int64)
    plant = rng.random((steps, batch)) < 0.02
    s[plant] = IM_START
    s[1:][plant[:-1]] = ANSWER
    return s


def time_core(samples: np.ndarray) -> float:
    steps, b = samples.shape
    spec = BudgetSpec(**SPEC)
    batch = BudgetBatch(b, max_rollback=0)
    for i in range(b):
        batch.insert(i, spec)
    out = np.empty(b, np.int32)
    t0 = time.perf_counter()
    for s in range(steps):
        batch.step(samples[s], out)
    return (time.perf_counter() - t0) / steps


def time_reference(samples: np.ndarray) -> float:
    steps, b = samples.shape
    rows = [RefRow(RefSpec(**SPEC), max_rollback=0) for _ in range(b)]
    lists = samples.tolist()
    t0 = time.perf_counter()
    for s in range(steps):
        for row, t in zip(rows, lists[s], strict=True):
            row.step(t)
    return (time.perf_counter() - t0) / steps


class TypicalProcessor:
    """Per-row Python budget logic as commonly written inside a logits processor."""

    def __init__(self, b: int) -> None:
        self.generated: list[list[int]] = [[] for _ in range(b)]
        self.forced: list[list[int]] = [[] for _ in range(b)]
        self.waits = [0] * b
        self.thinking = [True] * b

    def __call__(self, last: list[int], scores: torch.Tensor) -> torch.Tensor:
        for i, t in enumerate(last):
            g = self.generated[i]
            g.append(t)
            if self.forced[i]:
                f = self.forced[i].pop(0)
                scores[i, :] = -float("inf")
                scores[i, f] = 0.0
                continue
            if not self.thinking[i]:
                continue
            if g[-2:] == SPEC["think_end"][0]:
                if self.waits[i] < SPEC["num_extensions"]:
                    self.waits[i] += 1
                    self.forced[i] = list(SPEC["extensions"][0])
                else:
                    self.thinking[i] = False
            elif len(g) >= SPEC["max_thinking_tokens"]:
                self.thinking[i] = False
                self.forced[i] = list(SPEC["answer_prefix"])
        return scores


def time_typical(samples: np.ndarray) -> float:
    steps, b = samples.shape
    proc = TypicalProcessor(b)
    scores = torch.zeros(b, V)
    lists = samples.tolist()
    t0 = time.perf_counter()
    for s in range(steps):
        proc(lists[s], scores)
    return (time.perf_counter() - t0) / steps


def _fix_up(logits: torch.Tensor, sampled: np.ndarray) -> np.ndarray:
    """What the stack samples after the adapter's edit: the planted token, unless it was masked out."""
    s = torch.from_numpy(sampled)
    bad = torch.isneginf(logits[torch.arange(len(s)), s])
    if bool(bad.any()):
        s = s.clone()
        s[bad] = logits[bad].argmax(1)
    return s.numpy().astype(np.int64)


def time_adapter(kind: str, samples: np.ndarray) -> float:
    """Seconds per decode step that ``kind`` adds (its own calls only), on (B, V) float32 logits."""
    from types import SimpleNamespace

    from s1kit.budget.adapters.hf import HFBudgetForcing
    from s1kit.budget.adapters.masking import MaskBuffers
    from s1kit.budget.adapters.params import KEY, spec_to_params
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor, BudgetRegistry
    from s1kit.budget.adapters.vllm_batch import PersistentBatchBudget  # what the vLLM processor runs

    steps, b = samples.shape
    spec = BudgetSpec(**SPEC)
    prompt = [1, 2, IM_START, 26865]
    base = torch.randn(b, V, generator=torch.Generator().manual_seed(0))
    logits = base.clone()
    outputs: list[list[int]] = [[] for _ in range(b)]
    total = 0.0
    emitted = np.empty(b, np.int64)
    if kind == "vllm":
        proc = PersistentBatchBudget(b)
        params = SimpleNamespace(extra_args={KEY: spec_to_params(spec)})
        added = [(i, params, prompt, outputs[i]) for i in range(b)]
        proc.update(SimpleNamespace(batch_size=b, removed=[], added=added, moved=[]))
    elif kind == "sglang":
        sg = BudgetForcingLogitProcessor()
        sg.registry = BudgetRegistry(capacity=b)
        reqs = [SimpleNamespace(rid=str(i), origin_input_ids=prompt, output_ids=outputs[i]) for i in range(b)]
        sg_params = [{KEY: spec_to_params(spec), "__req__": r} for r in reqs]
    elif kind == "hf":
        hf = HFBudgetForcing(spec)
        ids = torch.tensor([prompt] * b)
    else:  # core mask: the core's mask + advance calls alone
        batch = BudgetBatch(b, max_rollback=0)
        for i in range(b):
            batch.insert(i, spec)
            batch.process_prompt(i, prompt)
        bufs = MaskBuffers(b, batch.ban_width)
        rows = np.arange(b, dtype=np.int64)
    for s in range(steps):
        logits.copy_(base)
        t0 = time.perf_counter()
        if kind == "vllm":
            proc.update(None)
            out = proc.apply(logits)
        elif kind == "sglang":
            out = sg(logits, sg_params)
        elif kind == "hf":
            out = hf.processor(ids, logits)
        else:
            if s > 0:
                batch.advance(emitted, rows)
            bufs.run(batch, rows)
            out = logits
        total += time.perf_counter() - t0
        if kind == "core mask":  # emit what the mask allows, without applying it to logits
            f = bufs.force[:b]
            emitted = np.where(f >= 0, f, samples[s])
            continue
        emitted = _fix_up(out, samples[s])
        for i, t in enumerate(emitted.tolist()):
            outputs[i].append(t)
        if kind == "hf":
            ids = torch.cat([ids, torch.from_numpy(emitted)[:, None]], 1)
    return total / steps


def best_of(fn, samples: np.ndarray, repeats: int) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(fn(samples) for _ in range(repeats)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="decode steps per measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--adapters", action="store_true", help="also measure the stack adapters")
    ap.add_argument("--adapter-steps", type=int, default=60, help="decode steps per adapter measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    print(
        f"# budget forcing cost per decode step ({platform.processor() or platform.machine()}, torch threads 1)\n"
    )
    print(
        "| batch | core (µs) | reference (µs) | typical processor (µs) | core vs reference | core vs typical |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for b in (1, 64, 256, 1024):
        samples = streams(args.steps, b)
        py_steps = samples[: max(50, args.steps // (1 + b // 64))]
        core = best_of(time_core, samples, args.repeats)
        ref = best_of(time_reference, py_steps, max(1, args.repeats // 2))
        typ = best_of(time_typical, py_steps, max(1, args.repeats // 2))
        results[b] = (core, ref, typ)
        print(f"| {b} | {core:.2f} | {ref:.1f} | {typ:.1f} | {ref / core:.0f}x | {typ / core:.0f}x |")
    adapters: dict[str, dict[int, float]] = {}
    if args.adapters:
        print("\n# adapter cost per decode step on (B, 151936) float32 logits (µs; lower is better)\n")
        kinds = ["core mask", "hf", "vllm", "sglang"]
        print(
            "| batch | "
            + " | ".join(kinds)
            + " | typical processor | "
            + " | ".join(f"{k} vs typical" for k in kinds[1:])
            + " |"
        )
        print("|---:|" + "---:|" * (2 * len(kinds)))
        for b in (1, 64, 256):
            samples = streams(args.adapter_steps, b)
            row = {k: statistics.median(time_adapter(k, samples) for _ in range(3)) * 1e6 for k in kinds}
            typ = results[b][2] if b in results else best_of(time_typical, samples, 2)
            for k in kinds:
                adapters.setdefault(k, {})[b] = row[k]
            cells = " | ".join(f"{row[k]:.0f}" for k in kinds)
            ratios = " | ".join(f"{row[k] / typ:.2f}x" for k in kinds[1:])
            print(f"| {b} | {cells} | {typ:.0f} | {ratios} |")
    core, ref, typ = results[256]
    summary = {
        "core_us_b256": round(core, 3),
        "reference_us_b256": round(ref, 2),
        "typical_us_b256": round(typ, 2),
        "speedup_b256": round(ref / core, 1),
        "speedup_vs_typical_b256": round(typ / core, 1),
        **{f"core_us_b{b}": round(v[0], 3) for b, v in results.items()},
        **{f"{k.replace(' ', '_')}_us_b{b}": round(v, 1) for k, d in adapters.items() for b, v in d.items()},
    }
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
