"""The demo's report page: one Markdown file that puts the stages' own outputs side by side.

Everything in it is read from what the stages wrote: the curation summary (``curate/summary.json``), the
trainer's log (``train/log.jsonl``, drawn as ``loss.png``) and the evaluation report (``eval/``: its
metrics, sweep points, scaling figure and samples, rewritten by :func:`s1kit.eval.report.write_report`)
and the trained weights. Besides ``report.md`` it writes ``results.json`` (the trained weights' SHA-256
and every accuracy count; two runs with the same settings, package versions, ``--nproc`` and CPU kernel
family give byte-identical files), ``scaling.png`` (s1's Figure 1 layout, :func:`s1kit.demo.scaling.plot`)
and ``readme_snippet.md`` (the headline numbers as the README quotes them). Every file is written
atomically (:mod:`s1kit._io`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from s1kit import _io
from s1kit.demo.scaling import Point, cell, drops_beyond_noise, pct, plot, read_points

PACKAGES = ("s1kit", "torch", "transformers", "tokenizers", "numpy")
"""The packages a seeded run's results depend on (named with their versions in the report)."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file the demo's stages wrote (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
    with _io.atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
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
    caps = sorted({c for r in recs if (c := r.get("max_thinking_tokens"))})
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

    domain = {row["id"]: row["domain"] for row in read_jsonl(out / "data" / "test.jsonl")}
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


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _mended_broken(eval_dir: Path, base: str, label: str) -> tuple[int, int]:
    """(problems wrong at ``base`` and right at ``label``, the other way round) in the samples."""
    from s1kit.eval.runner import read_samples

    recs = [r for r in read_samples(eval_dir) if r["method"] == "budget_forcing"]
    a = {r["problem_id"]: bool(r["correct"]) for r in recs if r["label"] == base}
    b = {r["problem_id"]: bool(r["correct"]) for r in recs if r["label"] == label}
    both = a.keys() & b.keys()
    return sum(b[p] and not a[p] for p in both), sum(a[p] and not b[p] for p in both)


def _capped(eval_dir: Path, label: str) -> str:
    """How many generations at sweep point ``label`` hit its cap (``k of n generations``)."""
    from s1kit.eval.runner import read_samples

    recs = [r for r in read_samples(eval_dir) if r["method"] == "budget_forcing" and r["label"] == label]
    return f"{sum(bool(r['capped']) for r in recs)} of {len(recs)} generations"


def _wait_effect(out: Path, points: list[Point]) -> tuple[list[str], list[str]]:
    """Forced-Wait points against the largest cap, with intervals, the problems each mended or broke
    and the verdict; returns (report lines, README snippet lines)."""
    bf = [p for p in points if p.method == "budget_forcing"]
    caps = sorted((p for p in bf if p.cap), key=lambda p: p.cap or 0)
    waits = [p for p in bf if p.label.startswith("wait=")]
    if not caps or not waits:
        return ["(no forced-Wait points in this sweep)"], []
    base = caps[-1]
    b_lo, b_hi = base.interval()
    lines = [
        f"Forced `Wait`s against the largest cap, `{base.label}` ({cell(base)}; the cap stopped the "
        f"thinking of {_capped(out / 'eval', base.label)}). `wait=K` sets no cap and replaces the "
        "model's first K attempts to end its thinking by `Wait`:",
        "",
    ]
    readme = []
    apart = []
    for w in waits:
        lo, hi = w.interval()
        if lo > b_hi:
            sep, verdict = "higher, intervals apart", "higher"
            apart.append(w)
        elif b_lo > hi:
            sep, verdict = "lower, intervals apart", "lower"
        else:
            sep = verdict = "intervals overlap"
        mended, broken = _mended_broken(out / "eval", base.label, w.label)
        lines.append(
            f"- `{w.label}`: {cell(w)}, {w.mean_thinking:.0f} thinking tokens ({sep}); against "
            f"`{base.label}` it mended {mended} problems and broke {broken}."
        )
        readme.append(
            f"- {w.label[5:]} forced Wait(s): {cell(w)}, {w.mean_thinking:.0f} thinking tokens "
            f"(largest cap {base.cap}: {cell(base)}; {verdict}; mended {mended}, broke {broken})"
        )
    lines.append("")
    if len(apart) == len(waits):
        lines.append(
            "Every forced-Wait point is above the largest cap with the 95% intervals apart: the forced "
            "`Wait` starts the recheck the model learned from the corrected traces, which redoes the "
            "steps without the first pass's blind spot (per family below)."
        )
    else:
        lines.append(
            "Not every forced-Wait point is above the largest cap with the 95% intervals apart "
            f"({len(apart)} of {len(waits)} are): on this run the recheck did not mend enough to tell "
            "an effect from noise; the per-family table below shows where it did and did not."
        )
    return lines, readme


def _monotone(points: list[Point]) -> str:
    """One line: does budget forcing's accuracy rise with its thinking tokens within noise?"""
    bf = [p for p in points if p.method == "budget_forcing"]
    drops = drops_beyond_noise(bf)
    head = "Budget forcing's accuracy against its mean thinking tokens (caps and forced Waits together) "
    if not drops:
        return head + (
            "rises monotonically within noise: no point lies below a point with fewer thinking tokens "
            "with their 95% intervals apart."
        )
    pairs = ", ".join(
        f"`{b.label}` ({pct(b.accuracy)}) below `{a.label}` ({pct(a.accuracy)})" for a, b in drops
    )
    return head + f"is not monotone within noise: {pairs}, with their 95% intervals apart."


def _kinds(out: Path) -> list[str]:
    """The trace kinds (:data:`s1kit.demo.tasks.TRACE_KINDS`) per family in the pool and in the
    curated selection, with each family's blind spot."""
    from s1kit.demo.tasks import SLIPS, TRACE_KINDS

    kind = {r["id"]: (r["domain"], r["kind"]) for r in read_jsonl(out / "data" / "pool.jsonl")}
    pool = Counter(kind.values())
    chosen = Counter(kind[r["id"]] for r in read_jsonl(out / "curate" / "selected.jsonl"))
    for c in (pool, chosen):  # the "all" row: every family's counts summed per kind
        c.update([("all", k) for (_, k) in c.elements()])
    lines = [
        "| family | first pass's blind spot | "
        + " | ".join(f"{k} (pool / selected)" for k in TRACE_KINDS)
        + " |",
        "|---|---|" + "---:|" * len(TRACE_KINDS),
    ]
    for fam in [*sorted(SLIPS), "all"]:
        cells = " | ".join(f"{pool[fam, k]} / {chosen[fam, k]}" for k in TRACE_KINDS)
        lines.append(f"| {fam} | {SLIPS.get(fam, '')} | {cells} |")
    return lines


def write_demo_report(out: Path, settings: dict[str, Any], determinism: dict[str, Any]) -> Path:
    """Write ``<out>/report.md``, ``results.json``, ``scaling.png``, ``loss.png`` and
    ``readme_snippet.md``; return the report's path. ``determinism`` holds what
    :mod:`s1kit.demo.deterministic` pinned: ``train_threads``, ``eval_threads``, ``cpu_capability``."""
    from s1kit.eval.report import write_report

    write_report(out / "eval")
    scaled = read_points(out / "eval")
    weights = sha256(out / "train" / "hf" / "model.safetensors")
    results = {
        "settings": settings,
        "weights_sha256": weights,
        "points": [
            {"method": p.method, "label": p.label, "problems": p.n, "correct": p.correct}
            | {"mean_thinking_tokens": p.mean_thinking}
            for p in scaled
        ],
    }
    results_text = json.dumps(results, indent=1, sort_keys=True) + "\n"
    _io.write_text(out / "results.json", results_text)
    results_sha = hashlib.sha256(results_text.encode()).hexdigest()
    plot(scaled, out / "scaling.png")
    versions = {p: _version(p) for p in PACKAGES}
    wait_lines, wait_readme = _wait_effect(out, scaled)
    monotone = _monotone(scaled)
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
        "`s1kit eval` (budget forcing; truncation and token-conditional prompting as baselines). Settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + ".",
        "",
        "Stage wall times: " + ", ".join(f"{k} {timings.get(k, 0):.0f}s" for k in timings) + ".",
        "",
        "## Reproducibility",
        "",
        f"Trained weights (`train/hf/model.safetensors`) SHA-256 `{weights}`; `results.json` (every "
        f"count in section 4) SHA-256 `{results_sha}`. A run with the same settings gives the same two "
        "hashes given the same package versions ("
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"), the same number of training processes (nproc={settings['nproc']}) and the same CPU "
        f"kernel family (`torch.backends.cpu.get_cpu_capability()`; this run: "
        f"{determinism['cpu_capability']}): each training rank runs with "
        f"{determinism['train_threads']} thread(s) and the evaluation with "
        f"{determinism['eval_threads']}, whatever the core count, under "
        "`torch.use_deterministic_algorithms(True)`, with a seeded data order, FSDP's gloo collectives "
        "in a fixed order and greedy decoding (`s1kit.demo.deterministic`). It does not depend on the "
        "machine's speed, load or core count; timings are the only numbers here that change between runs.",
        "",
        "## 1-2. Pool and curation",
        "",
        f"{summary['input_rows']} pool rows in four task families (the domains), {summary['selected']} "
        "selected. Decontamination is against the held-out test set; diversity samples across domains, "
        "longer traces first. The demo sets no length rule for difficulty and draws a pool barely larger "
        "than the selection: a trace with a recheck is longer than one without, so selecting by length "
        "would keep the easiest problems only where they were rechecked, and the model would learn to "
        "recheck easy problems on its own instead of stopping after its first pass.",
        "",
        "| stage | in | out | dropped | reasons / note |",
        "|---|---:|---:|---:|---|",
    ]
    for s in summary["stages"]:
        reasons = "; ".join(f"{k} ({v})" for k, v in s["reasons"].items())
        note = "; ".join(x for x in (reasons, s.get("note", "")) if x)
        lines.append(f"| {s['stage']} | {s['in']} | {s['out']} | {s['in'] - s['out']} | {note} |")
    lines += [
        "",
        "Trace kinds (`s1kit.demo.tasks`): the teacher's first pass has one blind spot per family; where "
        "it changes a running result (a slip) the pass ends with a wrong answer. *clean*: no slip, no "
        "recheck; *confirm*: no slip, then `Wait,` and a recheck that finds the same answer; *corrected*: "
        "a slip, then `Wait,` and a recheck that redoes the steps without the blind spot and ends with the "
        "right answer; *uncorrected*: a slip and no recheck (the teacher's answer is wrong). Counts in the "
        "pool and in the curated selection:",
        "",
        *_kinds(out),
    ]
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
        "the end of thinking K times by appending `Wait`. The baselines: truncation (`cut=N`) stops "
        "generation after N tokens with no forced answer; token-conditional prompting (`tokens=N`) "
        "appends `Think for up to N tokens.` to the question and enforces nothing (the model never saw "
        "that instruction in training, as s1's did not). A cap lets the row finish its line first (at "
        f"most {settings.get('grace_tokens', 0)} tokens more, `s1kit eval --grace-tokens`), so the answer "
        "follows a whole step; Control counts a generation within its cap, so it is low where the cap "
        "binds. Greedy decoding with one seed; answers graded by "
        "exact match. Accuracy: problems solved with the 95% Wilson interval over the test problems "
        "(binomial: the uncertainty of a test set this size; a seeded rerun reproduces every count).",
        "",
        "| method | point | problems solved [95% Wilson interval] | mean thinking tokens | Control |",
        "|---|---|---:|---:|---:|",
    ]
    for p, s_ in zip(points, scaled, strict=True):
        lines.append(
            f"| {p['method']} | {p['label']} | {cell(s_)} | "
            f"{float(p['mean_thinking_tokens']):.1f} | {_pct(p['control'])} |"
        )
    lines += [
        "",
        "![accuracy against average thinking tokens](scaling.png)",
        "",
        "Accuracy against average thinking tokens (log scale) in s1's layout: budget forcing's caps, its "
        "forced-Wait points (stars, joined to the largest cap), truncation and token-conditional "
        "prompting as separate series; error "
        "bars are the Wilson intervals.",
        "",
        *wait_lines,
        "",
        monotone,
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
    caps = sorted((p for p in scaled if p.method == "budget_forcing" and p.cap), key=lambda p: p.cap or 0)
    bf_scaling = [m["scaling"] for m in metrics if m["method"] == "budget_forcing"]
    snippet = [
        f"Measured by `s1kit demo --size {settings['size']} --seed {settings['seed']}` "
        f"({scaled[0].n} held-out problems, greedy; problems solved k/n = accuracy [95% Wilson interval "
        f"over problems]; weights SHA-256 `{weights[:16]}`, results.json `{results_sha[:16]}`):",
        "",
        "- budget forcing by thinking cap: " + "; ".join(f"{p.cap} tokens {cell(p)}" for p in caps),
        *wait_readme,
        "- " + monotone,
        "- truncation (baseline): "
        + "; ".join(f"{p.label[4:]} tokens {cell(p)}" for p in scaled if p.method == "truncation"),
        "- token-conditional prompting (baseline): "
        + "; ".join(f"{p.label[7:]} tokens {cell(p)}" for p in scaled if p.method == "token_conditional"),
        "- Scaling of budget forcing: "
        + ", ".join(f"{float(v):.1f}" if v not in ("", "None") else "-" for v in bf_scaling)
        + " points per 1,000 thinking tokens",
        "",
    ]
    _io.write_text(out / "readme_snippet.md", "\n".join(snippet))
    path = out / "report.md"  # last: its presence means every output above is in place
    _io.write_text(path, "\n".join(lines))
    return path
