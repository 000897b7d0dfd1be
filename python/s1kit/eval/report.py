"""The report of a run: summary tables (Markdown and CSV), the scaling figure, sample generations.

Reads ``<out>/run.json`` (the sweep the run used) and ``<out>/samples/*/*.jsonl``; writes
``summary.csv`` (one row per dataset x method x sweep point), ``metrics.csv`` (one row per dataset x
method: Control, Scaling, Performance, Budget error), ``scaling.png`` / ``scaling.svg`` (one panel per
dataset, accuracy against mean thinking tokens, one series per method) and ``report.md`` (all of it,
plus a few generations with their metadata).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from s1kit import _io
from s1kit.errors import DataError
from s1kit.eval import metrics
from s1kit.eval.methods import Outcome, Setting, SweepConfig, generation_key, select_outcome, sweep
from s1kit.eval.samples import SampleRecord, group_records, read_samples

RUN_FILE = "run.json"


@dataclass(frozen=True)
class PointRow:
    """One dataset x method x sweep point."""

    task: str
    method: str
    label: str
    value: str
    problems: int
    accuracy: float
    mean_thinking_tokens: float
    mean_answer_tokens: float
    mean_forced_tokens: float
    mean_generations: float
    control: float | None
    budget_error: float | None


@dataclass(frozen=True)
class MethodRow:
    """One dataset x method: the s1 metrics over its sweep."""

    task: str
    method: str
    points: int
    control: float | None
    scaling: float | None
    performance: float | None
    budget_error: float | None


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _measured(setting: Setting, outcome: Outcome) -> float:
    return float(outcome["steps"] if setting.control_unit == "steps" else outcome["thinking_tokens"])


def summarize(
    records: Iterable[SampleRecord], settings: dict[str, list[Setting]]
) -> tuple[list[PointRow], list[MethodRow]]:
    """Per-point and per-method rows from stored generations and the sweep that produced them."""
    groups = group_records(records)
    problems: dict[tuple[str, str], set[str]] = {}
    for task, method, _key, pid in groups:
        problems.setdefault((task, method), set()).add(pid)
    point_rows: list[PointRow] = []
    method_rows: list[MethodRow] = []
    for (task, method), pids in sorted(problems.items()):
        sweep_points: list[metrics.SweepPoint] = []
        all_control: list[tuple[float, float | None, float | None]] = []
        all_budget: list[tuple[float, float]] = []
        for s in settings.get(method, []):
            key, _ = generation_key(s, 0)
            outcomes: list[Outcome] = []
            for pid in sorted(pids):
                o = select_outcome(s, groups.get((task, method, key, pid), []))
                if o is not None:
                    outcomes.append(o)
            if not outcomes:
                continue
            ctrl: list[tuple[float, float | None, float | None]] = []
            if s.control_bounds is not None:
                lo, hi = s.control_bounds
                ctrl = [(_measured(s, o), lo, hi) for o in outcomes]
            budget = (
                [(float(o["thinking_tokens"]), float(s.token_budget)) for o in outcomes]
                if s.token_budget
                else []
            )
            acc = _mean([float(o["correct"]) for o in outcomes])
            think = _mean([float(o["thinking_tokens"]) for o in outcomes])
            point_rows.append(
                PointRow(
                    task=task,
                    method=method,
                    label=s.label,
                    value=str(s.value),
                    problems=len(outcomes),
                    accuracy=acc,
                    mean_thinking_tokens=think,
                    mean_answer_tokens=_mean([float(o["answer_tokens"]) for o in outcomes]),
                    mean_forced_tokens=_mean([float(o["forced_tokens"]) for o in outcomes]),
                    mean_generations=_mean([float(o["generations"]) for o in outcomes]),
                    control=metrics.control(ctrl),
                    budget_error=metrics.budget_error(budget),
                )
            )
            sweep_points.append(metrics.SweepPoint(think, acc))
            all_control += ctrl
            all_budget += budget
        if sweep_points:
            method_rows.append(
                MethodRow(
                    task=task,
                    method=method,
                    points=len(sweep_points),
                    control=metrics.control(all_control),
                    scaling=metrics.scaling(sweep_points),
                    performance=metrics.performance(sweep_points),
                    budget_error=metrics.budget_error(all_budget),
                )
            )
    return point_rows, method_rows


# ---------------------------------------------------------------------------------------------- writing


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{100 * x:.1f}%" if pct else f"{x:.1f}"
    return str(x)


def _write_csv(path: Path, rows: Sequence[Any], cls: type) -> None:
    names = [f.name for f in fields(cls)]
    with _io.atomic_open(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})


def plot_scaling(point_rows: Sequence[PointRow], out_stem: Path) -> list[Path]:
    """One panel per dataset: accuracy (%) against mean thinking tokens, one series per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r.task for r in point_rows})
    if not tasks:
        raise DataError("no sweep points to plot: the run has no graded generations yet")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in sorted({r.method for r in point_rows if r.task == task}):
            pts = sorted(
                (r.mean_thinking_tokens, 100 * r.accuracy)
                for r in point_rows
                if r.task == task and r.method == method
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set_title(task)
        ax.set_xlabel("mean thinking tokens")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    for p in paths:
        with _io.atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=150, format=p.suffix[1:])
    plt.close(fig)
    return paths


def _excerpt(text: str, head: int = 700, tail: int = 500) -> str:
    if len(text) <= head + tail + 20:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}"


def pick_samples(records: Sequence[SampleRecord], per_task: int = 2) -> list[SampleRecord]:
    """A few representative generations per dataset: a correct and an incorrect one where possible,
    from the generations with the most thinking (the largest budgets)."""
    chosen: list[SampleRecord] = []
    for task in sorted({r["task"] for r in records}):
        rs = sorted((r for r in records if r["task"] == task), key=lambda r: -int(r["thinking_tokens"]))
        picks = [next((r for r in rs if r["correct"]), None), next((r for r in rs if not r["correct"]), None)]
        chosen += [r for r in picks if r is not None][:per_task]
    return chosen


def write_report(out_dir: Path) -> dict[str, Path]:
    """Write every report file for the run in ``out_dir``; returns their paths by name."""
    out_dir = Path(out_dir)
    run_file = out_dir / RUN_FILE
    if not run_file.is_file():
        raise DataError(f"{run_file} is missing: this is not an `s1kit eval` output folder")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    sweep_values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in run["sweep"].items()
    }
    cfg = SweepConfig(**sweep_values)
    settings = {m: sweep(m, cfg) for m in run["methods"]}
    records = read_samples(out_dir)
    point_rows, method_rows = summarize(records, settings)
    paths = {"summary_csv": out_dir / "summary.csv", "metrics_csv": out_dir / "metrics.csv"}
    _write_csv(paths["summary_csv"], point_rows, PointRow)
    _write_csv(paths["metrics_csv"], method_rows, MethodRow)
    png, svg = plot_scaling(point_rows, out_dir / "scaling")
    paths["figure_png"], paths["figure_svg"] = png, svg

    lines = [
        "# s1kit evaluation report",
        "",
        f"Model: `{run.get('model', '?')}`; engine {run.get('engine', 's1kit')}, "
        f"{run.get('forcing', 'inloop')} forcing; tasks: {', '.join(run.get('tasks', []))}; "
        f"methods: {', '.join(run['methods'])}; seed {run.get('seed')}; style {run.get('style')}.",
        f"Generations stored: {len(records)}.",
        "",
        "## Scaling metrics (per dataset and method)",
        "",
        "Control: share of evaluations within the point's budget. Scaling: mean slope of accuracy over all "
        "pairs of sweep points, in accuracy points per 1,000 thinking tokens. Performance: best accuracy. "
        "Budget error: mean |thinking tokens - budget| / budget.",
        "",
        "| dataset | method | points | Control | Scaling | Performance | Budget error |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in method_rows:
        lines.append(
            f"| {m.task} | {m.method} | {m.points} | {_fmt(m.control, True)} | {_fmt(m.scaling)} | "
            f"{_fmt(m.performance, True)} | {_fmt(m.budget_error, True)} |"
        )
    lines += [
        "",
        "## Sweep points",
        "",
        "| dataset | method | point | problems | accuracy | mean thinking | mean answer | mean forced | "
        "generations | Control | Budget error |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in point_rows:
        lines.append(
            f"| {p.task} | {p.method} | {p.label} | {p.problems} | {_fmt(p.accuracy, True)} | "
            f"{p.mean_thinking_tokens:.1f} | {p.mean_answer_tokens:.1f} | {p.mean_forced_tokens:.1f} | "
            f"{p.mean_generations:.2f} | {_fmt(p.control, True)} | {_fmt(p.budget_error, True)} |"
        )
    lines += [
        "",
        "## Accuracy against thinking tokens",
        "",
        f"![scaling]({png.name}) ([SVG]({svg.name}))",
        "",
    ]
    lines += ["## Sample generations", ""]
    for r in pick_samples(records):
        lines += [
            f"### {r['task']} / {r['method']} / {r['label']} / problem {r['problem_id']} "
            f"({'correct' if r['correct'] else 'incorrect'})",
            "",
            f"extracted `{r['extracted']}`, gold `{r['gold']}`; thinking {r['thinking_tokens']}, answer "
            f"{r['answer_tokens']}, forced {r['forced_tokens']} tokens; extensions {r['extensions_used']}; "
            f"capped {r['capped']}; finish {r['finish_reason']}.",
            "",
            "```text",
            _excerpt(str(r["generation"])).replace("```", "'''"),
            "```",
            "",
        ]
    paths["report_md"] = out_dir / "report.md"
    # report.md last: its presence (atomic, like every file here) means the whole report is written.
    _io.write_text(paths["report_md"], "\n".join(lines))
    return paths
