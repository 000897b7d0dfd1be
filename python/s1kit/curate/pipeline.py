"""The s1K selection pipeline: stages in order, one manifest decision per input row, outputs.

Default stage order (s1): ``quality`` -> ``correctness`` -> ``decontam`` -> ``exact_dedup`` ->
``near_dedup`` -> [``embed_dedup`` with an embedding model] -> ``difficulty`` -> ``diversity``. Domains
are assigned before the first stage (a ``domain`` column when present, else the MSC classifier) so the
stage table can count survivors per domain throughout. The same inputs, configuration and seed give
the same selection, manifest and table.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from s1kit import _io
from s1kit.curate import correctness, decontam, dedup, difficulty, diversity, domains, quality
from s1kit.curate.embed import SentenceEmbedder
from s1kit.curate.loaders import Pool
from s1kit.curate.manifest import Manifest, StageStats
from s1kit.curate.schema import Row
from s1kit.errors import DataError

SUMMARY_FILE = "summary.json"

STAGES: tuple[str, ...] = (
    "quality",
    "correctness",
    "decontam",
    "exact_dedup",
    "near_dedup",
    "embed_dedup",
    "difficulty",
    "diversity",
)


@dataclass
class CurateConfig:
    k: int = 1000
    seed: int = 0
    skip: set[str] = field(default_factory=set)
    quality: quality.QualityConfig = field(default_factory=quality.QualityConfig)
    strict_correctness: bool = False
    grading_workers: int = 0
    eval_files: list[str] = field(default_factory=list)
    ngram: int = 8
    min_shared_ngrams: int = 1
    near: dedup.NearDupConfig = field(default_factory=dedup.NearDupConfig)
    keep: str = "first"
    embed_threshold: float = 0.95
    domain_method: str = "auto"  # auto | column | keywords | embeddings
    difficulty: difficulty.DifficultyConfig = field(default_factory=difficulty.DifficultyConfig)
    progress: bool = False


@dataclass
class CurateResult:
    selected: list[Row]
    manifest: Manifest
    domain_method: str
    notes: dict[str, str]


Drops = dict[int, tuple[str, dict[str, Any]]]


def assign_domains(rows: list[Row], method: str, embedder: SentenceEmbedder | None) -> str:
    """Fill ``row.domain``; return the method used (reported in the run summary)."""
    have_column = any(r.domain for r in rows)
    if method == "auto":
        method = "column" if have_column else ("embeddings" if embedder is not None else "keywords")
    if method == "column":
        if not have_column:
            raise ValueError("--domains column: the pool has no domain column; use keywords or embeddings")
        for r in rows:
            r.domain = r.domain or domains.GENERAL
    elif method == "keywords":
        for r in rows:
            r.domain = domains.classify_keywords(r.question or "")
    elif method == "embeddings":
        if embedder is None:
            raise ValueError("--domains embeddings needs --embed-model DIR")
        for r, d in zip(
            rows, domains.classify_embeddings([r.question or "" for r in rows], embedder), strict=True
        ):
            r.domain = d
    else:
        raise ValueError(f"domain method {method!r}: use auto, column, keywords or embeddings")
    return method


def run_pipeline(pool: Pool, cfg: CurateConfig, embedder: SentenceEmbedder | None = None) -> CurateResult:
    unknown = cfg.skip - set(STAGES)
    if unknown:
        raise ValueError(f"--skip-stage {sorted(unknown)}: stages are {', '.join(STAGES)}")
    manifest = Manifest.from_pool(pool)
    notes: dict[str, str] = {}
    alive = list(pool.rows)
    method = assign_domains(alive, cfg.domain_method, embedder)
    notes["domains"] = method
    manifest.stages.append(
        StageStats(
            "load", pool.num_input_rows, len(alive), Counter(i.reason.split(":")[0] for i in pool.issues)
        )
    )

    def apply(stage: str, fn: Callable[[list[Row]], Drops], note: Callable[[], str] = lambda: "") -> None:
        nonlocal alive
        if stage in cfg.skip:
            manifest.stages.append(StageStats(stage, len(alive), len(alive), note="skipped"))
            return
        t0 = time.perf_counter()
        drops = fn(alive)
        reasons: Counter[str] = Counter()
        survivors = []
        for r in alive:
            if r.row in drops:
                reason, detail = drops[r.row]
                manifest.drop(r, stage, reason, detail)
                reasons[reason] += 1
            else:
                survivors.append(r)
        text = " ".join(x for x in (note(), f"{time.perf_counter() - t0:.2f}s") if x)
        stats = StageStats(
            stage, len(alive), len(survivors), reasons, Counter(r.domain or "" for r in survivors), text
        )
        manifest.stages.append(stats)
        alive = survivors

    apply("quality", lambda rows: quality.quality_reasons(rows, cfg.quality))

    graded: list[correctness.CorrectnessResult] = []

    def correctness_stage(rows: list[Row]) -> Drops:
        res = correctness.check_traces(
            rows, strict=cfg.strict_correctness, workers=cfg.grading_workers, progress=cfg.progress
        )
        graded.append(res)
        return res.drops

    apply("correctness", correctness_stage, lambda: graded[0].note() if graded else "")

    eval_note: list[str] = []

    def decontam_stage(rows: list[Row]) -> Drops:
        if not cfg.eval_files:
            eval_note.append("no --eval files given")
            return {}
        evals = decontam.EvalSet.load(cfg.eval_files)
        res = decontam.decontaminate(rows, evals, n=cfg.ngram, min_shared=cfg.min_shared_ngrams)
        eval_note.append(f"{res.num_eval_items} eval items, {res.num_eval_ngrams} {cfg.ngram}-grams")
        return res.drops

    apply("decontam", decontam_stage, lambda: "; ".join(eval_note))
    apply("exact_dedup", lambda rows: dedup.exact_dedup(rows, cfg.keep))
    apply("near_dedup", lambda rows: dedup.near_dedup(rows, cfg.near, cfg.keep))
    if embedder is not None:
        apply(
            "embed_dedup",
            lambda rows: dedup.embedding_dedup(
                rows, embedder([r.question or "" for r in rows]), cfg.embed_threshold, cfg.keep
            ),
        )

    diff_result: list[difficulty.DifficultyResult] = []

    def difficulty_stage(rows: list[Row]) -> Drops:
        res = difficulty.select_difficult(rows, cfg.difficulty)
        diff_result.append(res)
        return res.drops

    apply("difficulty", difficulty_stage, lambda: diff_result[0].note if diff_result else "")
    must_keep = diff_result[0].must_keep if diff_result else set()

    if "diversity" in cfg.skip:
        selected, why = alive, {r.row: "all survivors (diversity skipped)" for r in alive}
    else:
        selected, why = diversity.diversity_sample(
            alive, cfg.k, seed=cfg.seed, length=diversity.rank_length, must_keep=must_keep
        )
    chosen = {r.row for r in selected}
    not_sampled: Counter[str] = Counter()
    for r in tqdm(alive, desc="manifest", disable=not cfg.progress, unit="row"):
        if r.row in chosen:
            manifest.keep(r, "diversity", why[r.row], {"domain": r.domain})
        else:
            manifest.drop(r, "diversity", "not sampled (final size k reached)", {"domain": r.domain})
            not_sampled["not sampled"] += 1
    manifest.stages.append(
        StageStats(
            "diversity",
            len(alive),
            len(selected),
            not_sampled,
            Counter(r.domain or "" for r in selected),
            f"k={cfg.k} seed={cfg.seed}",
        )
    )
    manifest.check_complete()
    return CurateResult(selected, manifest, method, notes)


def write_outputs(result: CurateResult, pool: Pool, out_dir: Path) -> dict[str, Path]:
    """Write ``selected.jsonl``, ``selected.parquet``, ``manifest.jsonl`` and, last, ``summary.json``.

    Atomic as a set: every file is first written in full to a temporary file in ``out_dir``; then the
    previous ``summary.json`` is removed, the new files are renamed into place and the new
    ``summary.json`` (which lists each file's size and SHA-256) is written last. ``summary.json``
    is the completion record: a folder without it, or whose files differ from what it lists, was
    interrupted (see :func:`check_outputs`); a kill never leaves new files beside an old summary.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "selected_jsonl": out_dir / "selected.jsonl",
        "selected_parquet": out_dir / "selected.parquet",
        "manifest": out_dir / "manifest.jsonl",
        "summary": out_dir / SUMMARY_FILE,
    }
    records = [r.to_record() for r in result.selected]
    columns = list(Row(row=0, file="", line=0).to_record())
    table = pa.Table.from_pylist(records, schema=None) if records else pa.table({c: [] for c in columns})
    with contextlib.ExitStack() as stack:
        tmp_jsonl = stack.enter_context(_io.atomic_path(paths["selected_jsonl"]))
        tmp_parquet = stack.enter_context(_io.atomic_path(paths["selected_parquet"]))
        tmp_manifest = stack.enter_context(_io.atomic_path(paths["manifest"]))
        with tmp_jsonl.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        pq.write_table(table, tmp_parquet)
        result.manifest.write(tmp_manifest)
        # The old completion record goes before any new file replaces an old one.
        _io.kill_point("curate.commit")
        paths["summary"].unlink(missing_ok=True)
        _io.fsync_dir(out_dir)
        # Leaving the stack renames the three files into place (in reverse order of entry).
    summary = {
        "input_rows": pool.num_input_rows,
        "selected": len(result.selected),
        "domain_method": result.domain_method,
        "field_maps": {f: m.describe() for f, m in pool.field_maps.items()},
        "stages": [
            {"stage": s.stage, "in": s.rows_in, "out": s.rows_out, "reasons": dict(s.reasons), "note": s.note}
            for s in result.manifest.stages
        ],
    }
    _io.write_marker(paths["summary"], summary, {k: v for k, v in paths.items() if k != "summary"})
    return paths


def check_outputs(out_dir: Path) -> None:
    """Raise :class:`~s1kit.errors.DataError` unless ``out_dir`` holds one complete curate run."""
    problems = _io.check_marker(Path(out_dir) / SUMMARY_FILE)
    if problems:
        raise DataError(
            f"{out_dir}: incomplete curate output ({'; '.join(problems)}); rerun `s1kit curate` into it"
        )
