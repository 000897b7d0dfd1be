"""Grading throughput: 10,000 (prediction, gold) pairs built from MATH500, serial vs parallel.

Pairs are rewrites of MATH500's reference answers that a model could plausibly write: equivalent ones
(``\\dfrac`` for ``\\frac``, ``n.0`` for ``n``, a fraction for an integer, ``\\left``/``\\right``
dropped, spacing after commas changed, a ``\\displaystyle`` prefix, a decimal for a simple fraction) and
wrong ones (off by one, a swapped fraction, another problem's answer, a term added), plus a few
pathological predictions that keep sympy busy for a long time. Every pair differs from its gold as a
string, so each one reaches math-verify.

Baseline: ``grade_batch(workers=0)``, the same grading serially in this process (math-verify's own
``signal.alarm`` limits only, no hard limit). Measured: a :class:`GradingPool` of W workers, the
hang-proof parallel grader (its start-up included). The two alternate over blocks of pairs so that
both see the same load on a shared machine.

    PYTHONPATH=python /tmp/venv/bin/python bench/grading.py --pairs 10000 --workers 2

Prints a table, the slowest items and every time-out, and one final JSON line with ``pairs_per_s``
(the pool), ``serial_pairs_per_s``, ``speedup`` and ``timeouts``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

from s1kit.eval.grading import GradeResult, GradingPool, grade_batch

REPO_ROOT = Path(__file__).resolve().parents[1]
PATHOLOGICAL = ["10^{10^{10}}", "9^{9^{9^{9}}}", "(10^{10^{8}})!", "2^{2^{2^{2^{2^{2}}}}}-1"]


def _int(s: str) -> int | None:
    return int(s) if re.fullmatch(r"-?\d+", s.strip()) else None


def equivalent_rewrites(gold: str) -> list[str]:
    out: list[str] = []
    if "\\frac" in gold and "\\dfrac" not in gold:
        out.append(gold.replace("\\frac", "\\dfrac"))
    if "\\dfrac" in gold:
        out.append(gold.replace("\\dfrac", "\\frac"))
    if "\\left" in gold or "\\right" in gold:
        out.append(gold.replace("\\left", "").replace("\\right", ""))
    if ", " in gold and "\\!" not in gold:
        out.append(gold.replace(", ", ","))
    elif "," in gold and "\\!" not in gold:
        out.append(gold.replace(",", ", "))
    n = _int(gold)
    if n is not None:
        out += [f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"{n} + 0"]
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", gold)
    if m and int(m.group(2)) in (2, 4, 5, 8, 10, 20, 25):
        out.append(str(int(m.group(1)) / int(m.group(2))))
    if not out:
        out.append("\\displaystyle " + gold)  # a style command, which changes no value
    return [o for o in out if o != gold]


def wrong_rewrites(gold: str, other: str) -> list[str]:
    out = [other] if other != gold else []
    n = _int(gold)
    if n is not None:
        out.append(str(n + 1))
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", gold)
    if m and m.group(1) != m.group(2):
        out.append(f"\\frac{{{m.group(2)}}}{{{m.group(1)}}}")
    out.append(f"{gold}+1")
    return out


def build_pairs(n: int, seed: int, pathological: int) -> list[tuple[str, str, bool | None]]:
    """(prediction, gold, expected); expected is None for the pathological items."""
    path = Path(os.environ.get("S1KIT_SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
    rows = [json.loads(line) for line in (path / "eval" / "math500.jsonl").open(encoding="utf-8")]
    golds = [str(r["answer"]) for r in rows]
    candidates: list[tuple[str, str, bool | None]] = []
    for i, g in enumerate(golds):
        candidates += [(p, g, True) for p in equivalent_rewrites(g)]
        candidates += [(p, g, False) for p in wrong_rewrites(g, golds[(i + 1) % len(golds)])]
    rng = random.Random(seed)
    pairs = [rng.choice(candidates) for _ in range(n - pathological)]
    pairs += [(PATHOLOGICAL[i % len(PATHOLOGICAL)], "1", None) for i in range(pathological)]
    rng.shuffle(pairs)
    return pairs


def summarize(name: str, results: list[GradeResult], expected: list[bool | None], seconds: float) -> dict:
    labelled = [(r.correct, e) for r, e in zip(results, expected, strict=True) if e is not None]
    return {
        "mode": name,
        "seconds": seconds,
        "pairs_per_s": len(results) / seconds,
        "timeouts": sum(r.timed_out for r in results),
        "agree_with_label": sum(c == e for c, e in labelled) / max(1, len(labelled)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--timeout-s", type=float, default=5.0)
    ap.add_argument("--pathological", type=int, default=4, help="pathological items among the pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-serial", action="store_true", help="measure the pool only")
    ap.add_argument("--block", type=int, default=500, help="pairs per alternating serial/pool block")
    args = ap.parse_args()

    pairs = build_pairs(args.pairs, args.seed, args.pathological)
    preds = [p for p, _, _ in pairs]
    golds = [g for _, g, _ in pairs]
    expected = [e for _, _, e in pairs]
    print(
        f"{len(pairs)} pairs from MATH500 ({sum(e is True for e in expected)} equivalent, "
        f"{sum(e is False for e in expected)} not, {args.pathological} pathological); "
        f"per-item limit {args.timeout_s} s; {args.workers} workers"
    )

    # The machine is shared, so load drifts during a long run: serial and pool alternate over blocks,
    # so that both see the same conditions. The pool is started once (its start-up counts in its time).
    blocks = [range(i, min(i + args.block, len(pairs))) for i in range(0, len(pairs), args.block)]
    parallel: list[GradeResult] = []
    serial: list[GradeResult] = []
    t_pool = t_serial = 0.0
    t0 = time.perf_counter()
    pool = GradingPool(workers=args.workers, timeout_s=args.timeout_s)
    pool.grade([("\\frac{1}{2}", "0.5", "math500")])  # start the workers
    startup = time.perf_counter() - t0
    t_pool += startup
    with pool:
        for b in blocks:
            t0 = time.perf_counter()
            parallel += pool.grade([(preds[i], golds[i], "math500") for i in b])
            t_pool += time.perf_counter() - t0
            if not args.skip_serial:
                t0 = time.perf_counter()
                serial += grade_batch(
                    [preds[i] for i in b],
                    [golds[i] for i in b],
                    "math500",
                    workers=0,
                    timeout_s=args.timeout_s,
                )
                t_serial += time.perf_counter() - t0
        restarts = pool.restarts
    print(
        f"pool start-up {startup:.1f} s (included in its time); workers replaced after a hard time-out: {restarts}"
    )
    rows = [summarize(f"pool, {args.workers} workers", parallel, expected, t_pool)]
    if not args.skip_serial:
        rows.insert(0, summarize("serial in-process (baseline)", serial, expected, t_serial))
        disagree = sum(a.correct != b.correct for a, b in zip(serial, parallel, strict=True))
        print(f"serial and pool verdicts differ on {disagree} pairs")
        wrong = [i for i in range(len(pairs)) if expected[i] is not None and serial[i].correct != expected[i]]
        print(f"pairs graded against their label (serial): {len(wrong)}")
        for i in wrong[:10]:
            print(f"- expected {expected[i]}: `{preds[i]}` vs `{golds[i]}`")

    print("\n| mode | seconds | pairs/s | time-outs | agrees with label |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['seconds']:.1f} | {r['pairs_per_s']:.1f} | {r['timeouts']} | "
            f"{100 * r['agree_with_label']:.2f}% |"
        )
    if len(rows) == 2:
        print(f"\nspeedup pool / serial: {rows[1]['pairs_per_s'] / rows[0]['pairs_per_s']:.2f}x")

    order = sorted(range(len(parallel)), key=lambda i: -parallel[i].seconds)
    print(
        "\nslowest items (pool):\n\n| seconds | prediction | gold | verdict | timed out |\n|---:|---|---|---|---|"
    )
    for i in order[:10]:
        r = parallel[i]
        print(f"| {r.seconds:.2f} | `{preds[i][:40]}` | `{golds[i][:40]}` | {r.correct} | {r.timed_out} |")
    timed = [i for i in range(len(parallel)) if parallel[i].timed_out]
    print(f"\ntime-outs (pool): {len(timed)}")
    for i in timed:
        print(f"- `{preds[i]}` vs `{golds[i]}` ({parallel[i].seconds:.2f} s)")
    final = {
        "pairs": len(pairs),
        "workers": args.workers,
        "pairs_per_s": round(rows[-1]["pairs_per_s"], 2),
        "serial_pairs_per_s": round(rows[0]["pairs_per_s"], 2) if len(rows) == 2 else None,
        "speedup": round(rows[1]["pairs_per_s"] / rows[0]["pairs_per_s"], 3) if len(rows) == 2 else None,
        "timeouts": len(timed),
    }
    print(json.dumps(final))


if __name__ == "__main__":
    main()
