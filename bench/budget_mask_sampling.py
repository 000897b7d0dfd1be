"""How far mask mode (the engine adapters) is from override mode (s1kit's engine) under sampling.

For greedy decoding the two are identical (tests/unit/test_budget_mask_greedy.py). Under sampling,
mask mode bans the end attempts and pools their probability onto the redirect token, and attributes
an emission of that token to the end attempt with one uniform draw against their share of the pool;
override mode samples first and replaces an end attempt. The two have the same distribution, but not
the same stream for the same seed. This measures, over random specs and stand-in models (a fixed random logits
table per position and last token, so rows are independent and a batch is many runs at once):

- ``noise``: total-variation distance between the outcome distributions of two override-mode runs
  with different seeds (the Monte Carlo floor; outcome = final phase, thinking, answer, extensions);
- ``mask``: override vs mask mode (the shared ``apply_mask``), plain temperature sampling;
- ``mask top-k``: the same with top-k applied *after* the edit, as an engine may do (the end
  probability is then computed from logits the engine truncates afterwards);
- ``legacy``: override vs the former mass-moving mask (the banned tokens' probability moved onto the
  redirect token, and every emission of it counted as a redirect), with its misattribution rate:
  the share of its counted redirects (extensions, and EOS replaced by the answer prefix) that
  override mode would not have counted (their expected number, from the decomposition of the
  redirect token's probability into its own and the pooled end attempts').

Run: ``python bench/budget_mask_sampling.py [--specs N] [--runs R]``. Prints a Markdown table and
ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from s1kit.budget import BudgetBatch, BudgetSpec  # noqa: E402
from s1kit.budget.adapters.masking import apply_mask  # noqa: E402

V, STEPS, TEMPERATURE = 10, 24, 0.8


def random_spec(rng: np.random.Generator) -> BudgetSpec | None:
    seq = lambda: tuple(int(t) for t in rng.integers(0, V, rng.integers(1, 3)))  # noqa: E731
    try:
        return BudgetSpec(
            vocab_size=V,
            think_end=(seq(),),
            eos=(9,),
            answer_prefix=tuple(int(t) for t in rng.integers(0, 9, 2)),
            extensions=(seq(),),
            max_thinking_tokens=int(rng.integers(6, 16)),
            num_extensions=int(rng.integers(0, 4)),
            max_answer_tokens=int(rng.integers(1, 6)),
        )
    except ValueError:  # a spec mask mode cannot run: refused, drawn again
        return None


def sample(probs: np.ndarray, rng: np.random.Generator, top_k: int | None) -> np.ndarray:
    if top_k is not None:
        kth = -np.sort(-probs, 1)[:, top_k - 1 : top_k]
        probs = np.where(probs >= kth, probs, 0.0)
        probs = probs / probs.sum(1, keepdims=True)
    u = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(1) < u).sum(1), V - 1).astype(np.int64)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp((x - x.max(1, keepdims=True)) / TEMPERATURE)
    return z / z.sum(1, keepdims=True)


def run(spec: BudgetSpec, table: np.ndarray, runs: int, mode: str, seed: int, top_k: int | None) -> tuple:
    """Outcomes of ``runs`` independent sampled decodes, and (legacy) the misattributed extensions."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    batch = BudgetBatch(runs, max_rollback=0)
    for r in range(runs):
        batch.insert(r, spec)
    last = np.zeros(runs, np.int64)
    rows = np.arange(runs, dtype=np.int64)
    force, redirect = np.zeros(runs, np.int64), np.zeros(runs, np.int64)
    ban = np.zeros((runs, max(batch.ban_width, 1)), np.int32)
    out = np.zeros(runs, np.int64)
    misattributed, counted_total = 0.0, 0
    for step in range(STEPS):
        logits = table[step, last]  # (runs, V)
        if mode == "override":
            t = sample(softmax(logits), rng, top_k)
            batch.step(t, out)
            t = np.where(out >= 0, out, t)
        elif mode == "mask":
            batch.mask(force, redirect, ban)
            x = torch.from_numpy(logits.copy())
            flags = apply_mask(
                x, rows, force, redirect, ban,
                sample_N=np.ones(runs, np.bool_), temperature_N=np.full(runs, TEMPERATURE), generator=gen,
            )  # fmt: skip
            t = sample(softmax(x.numpy()), rng, top_k)
            batch.advance(t, None, flags.numpy())
        else:  # legacy: pool the banned probability onto the redirect token
            batch.mask(force, redirect, ban)
            x = logits.copy()
            p = softmax(logits)
            for i in range(runs):
                if force[i] >= 0:
                    x[i] = -np.inf
                    x[i, force[i]] = 0.0
                elif redirect[i] >= 0:
                    b = ban[i][ban[i] >= 0]
                    x[i, redirect[i]] = TEMPERATURE * np.log(
                        np.exp(x[i, redirect[i]] / TEMPERATURE) + np.exp(x[i, b] / TEMPERATURE).sum()
                    )
                    x[i, b] = -np.inf
            t = sample(softmax(x), rng, top_k)
            counted = (redirect >= 0) & (force < 0) & (t == redirect)
            counted_total += int(counted.sum())
            for i in np.nonzero(counted)[0]:
                b = ban[i][ban[i] >= 0]
                own, pooled = p[i, redirect[i]], p[i, b].sum()
                misattributed += own / (own + pooled)
            batch.advance(t, None, counted.astype(np.int64))
        last = t
    a = batch.accounting()
    outcomes = Counter(
        zip(
            a.phase.tolist(),
            a.thinking_tokens.tolist(),
            a.answer_tokens.tolist(),
            a.extensions_used.tolist(),
            strict=True,
        )
    )
    return outcomes, misattributed, counted_total


def tv(a: Counter, b: Counter, n: int) -> float:
    return 0.5 * sum(abs(a[k] - b[k]) for k in set(a) | set(b)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", type=int, default=10)
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < args.specs:
        spec = random_spec(rng)
        if spec is None:
            continue
        table = rng.normal(size=(STEPS, V, V)) * 1.2
        table[:, :, 9] += 0.5  # EOS now and then
        n = args.runs
        o1, _, _ = run(spec, table, n, "override", 1, None)
        o2, _, _ = run(spec, table, n, "override", 2, None)
        m, _, _ = run(spec, table, n, "mask", 3, None)
        k1, _, _ = run(spec, table, n, "override", 4, 3)
        k2, _, _ = run(spec, table, n, "mask", 5, 3)
        lg, mis, counted = run(spec, table, n, "legacy", 6, None)
        rows.append(
            dict(
                noise=tv(o1, o2, n),
                mask=tv(o1, m, n),
                mask_topk=tv(k1, k2, n),
                legacy=tv(o1, lg, n),
                legacy_misattributed=mis / max(counted, 1),
            )
        )
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(
        f"specs {args.specs}, {args.runs} sampled runs per mode and spec, {STEPS} steps, T={TEMPERATURE}, V={V}"
    )
    print("| comparison | mean TV distance of outcomes | ratio to noise |")
    print("|---|---|---|")
    for k, label in (
        ("noise", "override vs override (noise floor)"),
        ("mask", "override vs mask (apply_mask)"),
        ("mask_topk", "override vs mask, top-k=3 after the edit"),
        ("legacy", "override vs legacy mass-moving mask"),
    ):
        print(f"| {label} | {mean[k]:.4f} | {mean[k] / mean['noise']:.2f} |")
    share = 100 * mean["legacy_misattributed"]
    print(
        f"legacy: {share:.1f}% of its counted redirects (extensions, EOS to answer) were the model's own token"
    )
    print(json.dumps({"machine": platform.machine(), **mean}))


if __name__ == "__main__":
    main()
