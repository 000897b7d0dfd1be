"""The demo's report page: one Markdown file that puts the stages' own outputs side by side.

Everything in it is read from what the stages wrote: the curation summary (``curate/summary.json``), the
trainer's log (``train/log.jsonl``, drawn as ``loss.png``) and the evaluation report (``eval/``: its
metrics, sweep points, scaling figure and samples, rewritten by :func:`s1kit.eval.report.write_report`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from s1kit import _io


def plot_loss(log_path: Path, out_png: Path) -> list[tuple[int, float]]:
    """Draw the training loss per step from the trainer's ``log.jsonl``; return (step, loss) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "step" in rec and "loss" in rec:
            points.append((int(rec["step"]), float(rec["loss"])))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot([s for s, _ in points], [v for _, v in points], lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per target token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return points


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _pct(x: str) -> str:
    return f"{100 * float(x):.1f}%" if x not in ("", "None") else "-"


def _samples(samples_dir: Path, n: int = 2) -> list[str]:
    """Problems solved at the largest cap but not at the smallest, shown at both."""
    from s1kit.eval.runner import read_samples

    recs = [r for r in read_samples(samples_dir.parent) if r["method"] == "budget_forcing"]
    caps = sorted({r["max_thinking_tokens"] for r in recs if r.get("max_thinking_tokens")})
    if len(caps) < 2:
        return ["(no budget-forcing samples)"]
    lo = {r["problem_id"]: r for r in recs if r.get("max_thinking_tokens") == caps[0]}
    hi = {r["problem_id"]: r for r in recs if r.get("max_thinking_tokens") == caps[-1]}
    pids = [p for p in hi if hi[p]["correct"] and p in lo and not lo[p]["correct"]][:n]
    lines: list[str] = []
    for pid in pids:
        for r in (lo[pid], hi[pid]):
            lines += [
                f"**{pid}, cap={r['max_thinking_tokens']}** ({'correct' if r['correct'] else 'incorrect'}; "
                f"extracted `{r['extracted']}`, gold `{r['gold']}`, {r['thinking_tokens']} thinking tokens)",
                "",
                "```text",
                (r["prompt"].split("<|im_start|>user\n")[-1].split("<|im_end|>")[0] + "\n" + r["generation"]),
                "```",
                "",
            ]
    return lines or ["(no problem was solved at the largest cap and missed at the smallest)"]


def _per_family(out: Path, labels: list[str]) -> list[str]:
    """Budget forcing's accuracy per task family (the test set's ``domain``) at each sweep point."""
    from s1kit.eval.runner import read_samples

    domain = {}
    for line in (out / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            domain[row["id"]] = row["domain"]
    tally: dict[tuple[str, str], list[int]] = {}
    for r in read_samples(out / "eval"):
        if r["method"] == "budget_forcing" and r["problem_id"] in domain:
            t = tally.setdefault((r["label"], domain[r["problem_id"]]), [0, 0])
            t[0] += bool(r["correct"])
            t[1] += 1
    families = sorted(set(domain.values()))
    lines = ["| point | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
    for label in labels:
        cells = [tally.get((label, f), [0, 0]) for f in families]
        lines.append(f"| {label} | " + " | ".join(f"{c}/{n}" for c, n in cells) + " |")
    return lines


def write_demo_report(out: Path, settings: dict[str, Any]) -> Path:
    """Write ``<out>/report.md`` (and ``loss.png``); return its path."""
    from s1kit.eval.report import write_report

    eval_paths = write_report(out / "eval")
    summary = json.loads((out / "curate" / "summary.json").read_text(encoding="utf-8"))
    losses = plot_loss(out / "train" / "log.jsonl", out / "loss.png")
    start = next(
        json.loads(line)
        for line in (out / "train" / "log.jsonl").read_text(encoding="utf-8").splitlines()
        if '"event": "start"' in line
    )
    timings = {}
    for f in sorted((out / ".done").glob("*.time")):
        timings[f.stem] = float(f.read_text())
    points = _read_csv(out / "eval" / "summary.csv")
    metrics = _read_csv(out / "eval" / "metrics.csv")
    model_cfg = json.loads((out / "model-init" / "config.json").read_text(encoding="utf-8"))

    lines = [
        "# s1kit demo: the s1 recipe in miniature",
        "",
        "Synthetic reasoning pool -> `s1kit curate` -> `s1kit train` (from scratch, FSDP over gloo) -> "
        "`s1kit eval` (budget forcing, truncation baseline). Settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + ".",
        "",
        "Stage wall times: " + ", ".join(f"{k} {timings.get(k, 0):.0f}s" for k in timings) + ".",
        "",
        "## 1-2. Pool and curation",
        "",
        f"{summary['input_rows']} pool rows in four task families (the domains), {summary['selected']} "
        "selected. Decontamination is against the held-out test set; difficulty keeps traces longer than "
        "the longest easiest-level trace (without a recheck) of their family; diversity samples across "
        "domains, longer traces first.",
        "",
        "| stage | in | out | dropped | reasons / note |",
        "|---|---:|---:|---:|---|",
    ]
    for s in summary["stages"]:
        reasons = "; ".join(f"{k} ({v})" for k, v in s["reasons"].items())
        note = "; ".join(x for x in (reasons, s.get("note", "")) if x)
        lines.append(f"| {s['stage']} | {s['in']} | {s['out']} | {s['in'] - s['out']} | {note} |")
    n_params_note = (
        f"Qwen2 architecture, {model_cfg['num_hidden_layers']} layers, hidden {model_cfg['hidden_size']}, "
        f"vocabulary {model_cfg['vocab_size']} (one token per character)"
    )
    lines += [
        "",
        "## 3. Training from scratch",
        "",
        f"{n_params_note}; {start['kept']} rows, {start['tokens']} tokens ({start['target_tokens']} targets), "
        f"{start['total_steps']} steps on {start['ranks']} rank(s). Loss: first "
        f"{losses[0][1]:.3f}, last {losses[-1][1]:.3f}.",
        "",
        "![training loss](loss.png)",
        "",
        "## 4. Evaluation: accuracy against thinking tokens",
        "",
        "Budget forcing caps the thinking at `cap=N` tokens and forces `Final Answer:`; `wait=K` suppresses "
        "the end of thinking K times by appending `Wait`. Truncation (`cut=N`) stops generation after N "
        "tokens with no forced answer, the baseline. Greedy decoding; answers graded by exact match.",
        "",
        "| method | point | problems | accuracy | mean thinking tokens | Control |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p['method']} | {p['label']} | {p['problems']} | {_pct(p['accuracy'])} | "
            f"{float(p['mean_thinking_tokens']):.1f} | {_pct(p['control'])} |"
        )
    lines += [
        "",
        f"![accuracy against thinking tokens](eval/{eval_paths['figure_png'].name})",
        "",
        "| method | Control | Scaling (points per 1,000 tokens) | Performance |",
        "|---|---:|---:|---:|",
    ]
    for m in metrics:
        scaling = f"{float(m['scaling']):.1f}" if m["scaling"] not in ("", "None") else "-"
        lines.append(f"| {m['method']} | {_pct(m['control'])} | {scaling} | {_pct(m['performance'])} |")
    bf_labels = [p["label"] for p in points if p["method"] == "budget_forcing"]
    lines += ["", "Budget forcing, problems solved per task family:", ""]
    lines += _per_family(out, bf_labels)
    lines += ["", "## 5. Sample generations (the same test problem at the smallest and largest cap)", ""]
    lines += _samples(out / "eval" / "samples")
    lines += ["", "Every sweep point and more samples: [eval/report.md](eval/report.md).", ""]
    path = out / "report.md"
    _io.write_text(path, "\n".join(lines))
    return path
