"""``s1kit eval``: run test-time-scaling methods on benchmarks and write the report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s1kit import _io
from s1kit.backends.arguments import add_engine_arguments, engine_options, options_record
from s1kit.budget.delimiters import add_delimiter_arguments, delimiters_from_args
from s1kit.errors import ConfigError

if TYPE_CHECKING:
    from s1kit.eval.tasks import Problem

HELP = (
    "Evaluate a model on AIME/MATH500/AMC/GPQA with test-time-scaling methods; write samples, metrics, plots."
)

# Settings that change what a stored generation means: a rerun into the same folder must keep them.
_FIXED = (
    "model",
    "seed",
    "style",
    "delimiters",
    "max_new_tokens",
    "temperature",
    "sample_temperature",
    "max_answer_tokens",
    "grace_tokens",
    "engine",
    "forcing",
)
# What a run.json from before a setting was stored had: the setting's value then.
_BEFORE_STORED: dict[str, Any] = {"engine": "s1kit", "forcing": "inloop", "grace_tokens": 0}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="Hugging Face model directory (config, safetensors, tokenizer) or hub name; with --engine "
        "openai, the served model's name",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (rerun into it to resume)")
    p.add_argument(
        "--tasks",
        type=_names,
        default=["aime24", "math500"],
        help="aime24,aime25,amc23,math500,gpqa, or a file of your own (PATH.jsonl or NAME=PATH; rows with "
        "question and answer fields, graded by --task-grading)",
    )
    p.add_argument(
        "--task-grading",
        choices=["math", "exact"],
        default="math",
        help="grading of tasks read from a file: math (math-verify) or exact (same text up to whitespace)",
    )
    p.add_argument("--methods", type=_names, default=["budget_forcing"], help="comma-separated method names")
    p.add_argument("--budgets", type=_ints, default=(512, 1024, 2048), help="thinking-token budgets")
    p.add_argument("--extensions", type=_ints, default=(0, 2, 4, 6), help="numbers of forced 'Wait's")
    p.add_argument("--steps", type=_ints, default=(4, 8, 16), help="step budgets (step_conditional)")
    p.add_argument("--votes", type=_ints, default=(1, 2, 4, 8), help="k for majority voting")
    p.add_argument(
        "--max-tries", type=int, default=8, help="rejection sampling: tries per problem and budget"
    )
    p.add_argument("--limit", type=int, default=None, help="first N problems per task")
    p.add_argument("--seed", type=int, default=42)
    add_delimiter_arguments(
        p.add_argument_group("thinking delimiters (the ones chosen are printed and stored in run.json)")
    )
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--max-answer-tokens", type=int, default=512)
    p.add_argument(
        "--grace-tokens",
        type=int,
        default=0,
        help="budget forcing's caps: let a row finish its line, at most this many tokens past the cap, "
        "before the answer is forced (default 0: force at the cap)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="for the deterministic methods")
    p.add_argument(
        "--sample-temperature", type=float, default=1.0, help="rejection sampling, majority voting"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding eval/<task>.jsonl")
    p.add_argument(
        "--gpqa-path", type=Path, default=None, help="GPQA Diamond CSV/JSONL (the hub set is gated)"
    )
    add_engine_arguments(
        p,
        device_default=None,
        max_len_default=None,
        max_len_help="prompt plus generated tokens per request (default: 2048 prompt tokens + "
        "--max-new-tokens)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="requests per engine call, stored when it returns (default: --max-batch); larger keeps the "
        "batch fuller across stragglers, and a crash then loses up to this many generations",
    )
    p.add_argument("--grading-workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from stored samples")


def _old_run(out: Path) -> dict[str, Any] | None:
    path = out / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _refuse_changes(out: Path, old: dict[str, Any], run: dict[str, Any], keys: Sequence[str]) -> None:
    """Raise :class:`ConfigError` if ``run`` changes one of ``keys`` against the stored ``old`` run."""
    for k in keys:
        if k == "delimiters" and k not in old:
            continue  # a run from before delimiters were stored: its style says what they were
        a = old.get(k) if k in old else old.get("sweep", {}).get(k, _BEFORE_STORED.get(k))
        b = run.get(k) if k in run else run["sweep"].get(k)
        if a != b:
            raise ConfigError(
                f"{out} holds a run with {k}={a!r}, this one has {k}={b!r}: reuse the same value to resume, "
                "or write to another --out"
            )


def _check_run_file(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Merge ``run`` with an existing run.json, refusing changes that would mix incompatible samples."""
    old = _old_run(out)
    if old is None:
        return run
    _refuse_changes(out, old, run, _FIXED)
    merged = dict(run)
    merged["tasks"] = list(dict.fromkeys([*old.get("tasks", []), *run["tasks"]]))
    merged["methods"] = list(dict.fromkeys([*old.get("methods", []), *run["methods"]]))
    sweep = dict(run["sweep"])
    for k in ("budgets", "extensions", "steps", "votes"):
        sweep[k] = sorted(set(old["sweep"].get(k, [])) | set(sweep[k]))
    merged["sweep"] = sweep
    return merged


def run(args: argparse.Namespace) -> int:
    from s1kit.eval.methods import SweepConfig, check_methods
    from s1kit.eval.report import write_report

    out: Path = args.out
    if args.report_only:
        paths = write_report(out)
        print(f"report: {paths['report_md']}")
        return 0

    from s1kit.backends import load_backend
    from s1kit.eval.runner import EvalRunner, RunConfig
    from s1kit.eval.tasks import is_task_file, load_file_task, load_task

    methods = check_methods(args.methods)
    sweep_cfg = SweepConfig(
        budgets=args.budgets,
        extensions=args.extensions,
        steps=args.steps,
        votes=args.votes,
        max_tries=args.max_tries,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        sample_temperature=args.sample_temperature,
        max_answer_tokens=args.max_answer_tokens,
        grace_tokens=args.grace_tokens,
    )
    problems: dict[str, Sequence[Problem]] = {}
    for t in args.tasks:
        if is_task_file(t):
            rows = load_file_task(t, grading=args.task_grading, limit=args.limit)
            problems[rows[0].task] = rows
        else:
            problems[t] = load_task(
                t,
                data_dir=args.data_dir,
                path=args.gpqa_path if t == "gpqa" else None,
                limit=args.limit,
                seed=args.seed,
            )
    # Refuse another engine or forcing before loading one (the other settings need its tokenizer).
    old = _old_run(out)
    if old is not None:
        _refuse_changes(out, old, {"engine": args.engine, "forcing": args.forcing}, ("engine", "forcing"))
    longest_prompt = 2048  # chat template + the longest benchmark question, with room to spare
    options = engine_options(args, max_len=args.max_len or longest_prompt + args.max_new_tokens)
    backend = load_backend(args.engine, str(args.model), options)
    try:
        delimiters = delimiters_from_args(backend.tokenizer, args)
        print(f"s1kit eval: {delimiters.describe()}; engine {backend.name}, forcing {args.forcing}")
        model_path = Path(args.model)
        record = {
            "model": str(model_path.resolve()) if model_path.exists() else str(args.model),
            "engine": args.engine,
            "forcing": args.forcing,
            "engine_options": options_record(options),
            "tasks": list(problems),
            "methods": methods,
            "seed": args.seed,
            "style": delimiters.style,
            "delimiters": delimiters.to_record(),
            "limit": args.limit,
            "sweep": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(sweep_cfg).items()},
        }
        out.mkdir(parents=True, exist_ok=True)
        record = _check_run_file(out, record)
        _io.write_text(out / "run.json", json.dumps(record, indent=2))
        runner = EvalRunner(
            backend,
            out,
            sweep_cfg,
            RunConfig(
                style=delimiters.style,
                delimiters=delimiters,
                seed=args.seed,
                chunk_size=args.chunk_size,
                grading_workers=args.grading_workers,
                forcing=args.forcing,
            ),
        )
        produced = runner.run(problems, methods, progress=not args.no_progress)
    finally:
        backend.close()
    paths = write_report(out)
    print(f"{produced} new generations; report: {paths['report_md']}; figure: {paths['figure_png']}")
    return 0
