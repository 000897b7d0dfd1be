"""``s1kit distill``: a teacher's thinking trace and answer per question, kept when the answer is right."""

from __future__ import annotations

import argparse
from pathlib import Path

from s1kit.backends.arguments import add_engine_arguments
from s1kit.budget.delimiters import add_delimiter_arguments

HELP = (
    "Distill teacher traces: generate a budget-forced thinking trace + answer per question, keep those "
    "whose answer grades correct (LIMO), write the format `s1kit train` reads."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, metavar="MODEL", help="teacher model folder (or name)")
    p.add_argument(
        "--in",
        dest="in_path",
        type=Path,
        required=True,
        help="questions with reference answers (e.g. curate's selected.jsonl; any pool format)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="kept rows (JSON Lines: the input columns + thinking_trajectories, attempt, teacher, "
        "teacher_thinking_tokens); the manifest goes to <out stem>.manifest.jsonl",
    )
    p.add_argument(
        "--generation-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="generation cache, resumed from (default: <out stem>.generations.jsonl beside --out)",
    )
    p.add_argument(
        "--max-thinking-tokens",
        type=int,
        default=8192,
        help="thinking budget, forced to end there (default 8192)",
    )
    p.add_argument(
        "--num-extensions", type=int, default=0, help="ends of thinking suppressed with 'Wait' (default 0)"
    )
    p.add_argument(
        "--max-answer-tokens", type=int, default=1024, help="answer tokens after thinking (default 1024)"
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="tokens per generation, forced ones included (default: thinking budget + answer tokens)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seeds each question's sampling (default 0)")
    add_delimiter_arguments(
        p.add_argument_group("thinking delimiters (default: detected from the tokenizer)")
    )
    add_engine_arguments(
        p,
        device_default=None,
        max_len_default=16384,
        max_len_help="prompt + generated tokens per question (default: 16384)",
        forcing=False,
    )
    p.add_argument("--grading-workers", type=int, default=1, help="grading processes (default 1)")
    p.add_argument(
        "--grading-timeout", type=float, default=5.0, help="seconds per answer comparison (default 5)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from typing import Any

    from s1kit.backends.arguments import engine_options
    from s1kit.budget.delimiters import delimiter_flags_given, delimiters_from_args
    from s1kit.distill.generations import GenerationSettings
    from s1kit.distill.traces import DistillConfig, default_cache_path, distill, write_outputs

    if not args.in_path.is_file():
        raise ValueError(f"--in {args.in_path}: no such file")
    max_new = args.max_new_tokens or args.max_thinking_tokens + args.max_answer_tokens
    settings = GenerationSettings(
        max_thinking_tokens=args.max_thinking_tokens,
        num_extensions=args.num_extensions,
        max_answer_tokens=args.max_answer_tokens,
        max_new_tokens=max_new,
        temperature=args.temperature,
        seed=args.seed,
    )

    def delimiters(tok: Any) -> Any:
        return delimiters_from_args(tok, args)

    cfg = DistillConfig(
        teacher=args.teacher,
        cache_path=args.generation_cache or default_cache_path(args.out),
        settings=settings,
        delimiters=delimiters if delimiter_flags_given(args) else None,
        engine=args.engine,
        options=engine_options(args, max_len=args.max_len),
        grading_workers=args.grading_workers,
        grading_timeout_s=args.grading_timeout,
        progress=not args.quiet,
    )
    result = distill(args.in_path, cfg)
    paths = write_outputs(result, args.out)
    print(result.delimiters.describe())
    print(result.manifest.table())
    n = result.manifest.num_input_rows
    print(f"kept {len(result.kept)} of {n} rows ({result.stats.describe()})")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0
