"""The demo at several seeds: do forced "Wait"s raise accuracy beyond the spread over seeds?

Runs ``s1kit demo --size SIZE --seed S --out DIR/seed-S`` for each seed, one after the other (a run
that finished earlier is reused through the demo's stage markers). A seed sets everything: the pool,
the held-out test set, the curated selection, the initial weights and the data order, so the spread
over seeds is that of the whole recipe, not of sampling. Then, from each run's ``eval/summary.csv``, per
sweep point of every method: each seed's accuracy with its 95% Wilson interval over the test
problems, the mean over seeds with its 95% Student-t interval (clipped to [0, 1]), and the mean
thinking tokens.

The baseline is budget forcing's largest cap (no forced Wait; the report says whether it stopped any
thinking). Printed checks, per seed and on the means:

- ``wait=K`` against the largest cap: the ratio of accuracies, and whether the intervals are apart;
- budget forcing's points (caps and forced Waits) rise with mean thinking tokens within noise (no
  point below a point with fewer thinking tokens with intervals apart,
  :func:`s1kit.demo.scaling.drops_beyond_noise`).

    PYTHONPATH=python python bench/demo_seeds.py --seeds 0,1,2 --dir runs/demo-seeds \\
        --md bench/results/<date>_cpu-2core-demo-seeds.md

Prints a markdown table (also written to ``--md``) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from s1kit.demo.scaling import cell, drops_beyond_noise, pct, read_points, t_interval


def run_seed(size: str, seed: int, out: Path, nproc: int) -> float:
    """Run (or reuse) one seed's demo; return its wall time in seconds."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "s1kit.cli", "demo", "--size", size, "--seed", str(seed)]
    cmd += ["--out", str(out), "--nproc", str(nproc), "--no-progress"]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated demo seeds (2 to 11)")
    ap.add_argument("--size", default="full", choices=("full", "small"))
    ap.add_argument("--dir", type=Path, default=Path("runs/demo-seeds"), help="one demo folder per seed")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if not 2 <= len(seeds) <= 11:
        ap.error(f"--seeds: give 2 to 11 seeds, got {len(seeds)}")

    walls = {s: run_seed(args.size, s, args.dir / f"seed-{s}", args.nproc) for s in seeds}
    runs = {s: read_points(args.dir / f"seed-{s}" / "eval") for s in seeds}
    keys = [(p.method, p.label) for p in runs[seeds[0]]]
    by = {s: {(p.method, p.label): p for p in pts} for s, pts in runs.items()}

    lines = [
        f"# The demo at seeds {', '.join(map(str, seeds))} (`s1kit demo --size {args.size}`)",
        "",
        "Command: `python " + " ".join(sys.argv) + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "demo wall time per seed (stages run or reused): "
        + ", ".join(f"seed {s} {w:.0f}s" for s, w in walls.items())
        + ". Each cell: problems solved k/n = accuracy [95% Wilson interval over the test problems]; "
        "mean: over seeds, [95% Student-t interval over seeds, clipped to [0%, 100%]].",
        "",
        "| method | point | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean [95% t] | thinking tokens |",
        "|---|---|" + "---|" * len(seeds) + "---:|---:|",
    ]
    means: dict[tuple[str, str], tuple[float, float, float]] = {}
    for k in keys:
        accs = [by[s][k].accuracy for s in seeds]
        means[k] = t_interval(accs)
        m, lo, hi = means[k]
        lo, hi = max(lo, 0.0), min(hi, 1.0)  # an accuracy lies in [0, 1]: the t-interval is clipped there
        think = sum(by[s][k].mean_thinking for s in seeds) / len(seeds)
        cells = " | ".join(cell(by[s][k]) for s in seeds)
        lines.append(f"| {k[0]} | {k[1]} | {cells} | {pct(m)} [{pct(lo)}, {pct(hi)}] | {think:.1f} |")

    caps = sorted(
        (k for k in keys if k[0] == "budget_forcing" and k[1].startswith("cap=")), key=lambda k: int(k[1][4:])
    )
    waits = [k for k in keys if k[0] == "budget_forcing" and k[1].startswith("wait=")]
    base = caps[-1]
    lines += ["", f"Baseline: budget forcing's largest cap, `{base[1]}` (no forced Wait).", ""]
    summary: dict[str, object] = {"seeds": seeds, "size": args.size, "baseline": base[1]}
    for w in waits:
        per_seed = []
        for s in seeds:
            a, b = by[s][base], by[s][w]
            apart = b.interval()[0] > a.interval()[1]
            per_seed.append((s, b.accuracy / a.accuracy if a.accuracy else float("inf"), apart))
        m_w, lo_w, _ = means[w]
        m_b, _, hi_b = means[base]
        lines.append(
            f"- `{w[1]}` / `{base[1]}`: "
            + ", ".join(
                f"seed {s} {r:.2f}x ({'intervals apart' if ap else 'intervals overlap'})"
                for s, r, ap in per_seed
            )
            + f"; mean {pct(m_w)} against {pct(m_b)}, ratio {m_w / m_b:.2f}x, t-intervals "
            + ("apart" if lo_w > hi_b else "overlap")
            + "."
        )
        summary[f"{w[1]}_ratio_mean"] = round(m_w / m_b, 3)
        summary[f"{w[1]}_apart_seeds"] = sum(ap for _, _, ap in per_seed)
    for s in seeds:
        bf = [p for p in runs[s] if p.method == "budget_forcing"]
        drops = drops_beyond_noise(bf)
        lines.append(
            f"- seed {s}: budget forcing "
            + (
                "rises with thinking tokens within noise"
                if not drops
                else "drops beyond noise: " + ", ".join(f"{b.label} below {a.label}" for a, b in drops)
            )
            + "."
        )
        summary[f"seed{s}_monotone"] = not drops
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text, encoding="utf-8")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
