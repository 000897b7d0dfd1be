"""The s1K selection pipeline: stages in order, one manifest decision per input row, outputs.

Default stage order (s1): ``quality`` -> ``correctness`` -> ``decontam`` -> ``exact_dedup`` ->
``near_dedup`` -> [``embed_dedup`` with an embedding model] -> ``difficulty`` -> ``diversity``. Domains
are assigned before the first stage (a ``domain`` column when present, else the MSC classifier) so the
stage table can count survivors per domain throughout. The same inputs, configuration and seed give
the same selection, manifest and table.
"""

from __future__ import annotations

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


OUTPUT_FILES: tuple[str, ...] = ("selected.jsonl", "selected.parquet", "manifest.jsonl", SUMMARY_FILE)


def _not_carried(name: str) -> bool:
    """The run's own outputs (rewritten) and their temporaries from older s1kit versions."""
    return name in OUTPUT_FILES or any(
        name.startswith(f".{f}.") and name.endswith(".tmp") for f in OUTPUT_FILES
    )


def write_outputs(result: CurateResult, pool: Pool, out_dir: Path) -> dict[str, Path]:
    """Write ``selected.jsonl``, ``selected.parquet``, ``manifest.jsonl`` and ``summary.json`` into
    ``out_dir``, replacing the previous run's set as a whole.

    The complete new set is built in a staging folder beside ``out_dir`` (``.<name>.partial``), with
    ``summary.json`` written last there; every other entry of the old ``out_dir`` (an embedding cache,
    a user's notes, folders) is carried into it (hard links, or copies where the file system has
    none). The staging folder then replaces ``out_dir`` in one step with :func:`s1kit._io.atomic_dir`:
    on Linux file systems with ``renameat2(RENAME_EXCHANGE)`` a kill at any moment leaves ``out_dir``
    exactly the old folder or exactly the new one. Elsewhere the swap is two renames: a kill between
    them leaves ``out_dir`` missing and the old folder whole in ``.<name>.old``, which the next run
    into ``out_dir`` moves back before anything else. ``summary.json`` is the completion record (it
    lists each data file's size and SHA-256); see :func:`check_outputs`. ``out_dir``'s parent folder
    must be writable.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [r.to_record() for r in result.selected]
    columns = list(Row(row=0, file="", line=0).to_record())
    table = pa.Table.from_pylist(records, schema=None) if records else pa.table({c: [] for c in columns})
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
    keys = ("selected_jsonl", "selected_parquet", "manifest", "summary")
    with _io.atomic_dir(out_dir) as staging:
        _io.carry_entries(Path(out_dir), staging, _not_carried)
        new = {k: staging / name for k, name in zip(keys, OUTPUT_FILES, strict=True)}
        with new["selected_jsonl"].open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        pq.write_table(table, new["selected_parquet"])
        result.manifest.write(new["manifest"])
        _io.write_marker(new["summary"], summary, {k: v for k, v in new.items() if k != "summary"})
        _io.kill_point("curate.commit")  # the new set complete beside the old folder, nothing swapped
    return {k: Path(out_dir) / name for k, name in zip(keys, OUTPUT_FILES, strict=True)}


def check_outputs(out_dir: Path) -> None:
    """Raise :class:`~s1kit.errors.DataError` unless ``out_dir`` holds one complete curate run: its
    ``summary.json`` is present and readable, and every file it lists has the recorded size and
    SHA-256. A missing ``out_dir`` with ``.<name>.old`` beside it is named as a swap that a kill
    interrupted (rerun ``s1kit curate`` into it: the old folder is moved back first)."""
    out_dir = Path(out_dir)
    aside = out_dir.parent / f".{out_dir.name}.old"
    if not out_dir.exists() and aside.is_dir():
        raise DataError(
            f"{out_dir}: missing, its previous content is in {aside} (a run was killed while replacing "
            "the folder); rerun `s1kit curate` into it, which moves it back first"
        )
    problems = _io.check_marker(Path(out_dir) / SUMMARY_FILE)
    if problems:
        raise DataError(
            f"{out_dir}: incomplete curate output ({'; '.join(problems)}); rerun `s1kit curate` into it"
        )
