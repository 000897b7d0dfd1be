"""The s1K selection pipeline: stages in order, one manifest decision per input row, outputs.

Default stage order (s1): ``quality`` -> ``correctness`` -> ``decontam`` -> ``exact_dedup`` ->
``near_dedup`` -> [``embed_dedup`` with an embedding model] -> [``attempts`` with an attempts runner]
-> ``difficulty`` -> ``diversity``. Domains
are assigned before the first stage (a ``domain`` column when present, else the MSC classifier) so the
stage table can count survivors per domain throughout. The same inputs, configuration and seed give
the same selection, manifest and table.

The stages run from one table, :data:`PIPELINE`: each :class:`Stage` takes the surviving rows and a
:class:`StageContext` and returns a :class:`StageOutcome` (drops with reasons, a note, and for the final
stage the selection); :func:`apply` records every outcome in the manifest and the stage table the same
way. Bad configuration raises :class:`~s1kit.errors.ConfigFieldError` naming the
:class:`CurateConfig` field; ``s1kit curate`` (``curate/cli.py``) names its flag instead.
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

import s1kit.curate.attempts as attempts
import s1kit.curate.correctness as correctness
import s1kit.curate.decontam as decontam
import s1kit.curate.dedup as dedup
import s1kit.curate.difficulty as difficulty
import s1kit.curate.diversity as diversity
import s1kit.curate.domains as domains
import s1kit.curate.quality as quality
from s1kit import _io
from s1kit.curate.attempts import AttemptsRunner
from s1kit.curate.embed import SentenceEmbedder
from s1kit.curate.loaders import Pool
from s1kit.curate.manifest import Manifest, StageStats
from s1kit.curate.schema import Row
from s1kit.errors import ConfigFieldError, DataError

SUMMARY_FILE = "summary.json"


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


@dataclass(frozen=True)
class StageOutcome:
    """What one stage decided about the rows it was given.

    ``drops``: ``{row: (reason, detail)}``, every other row goes on. ``selected``: only a final stage
    sets it, the rows it keeps in selection order with why (``{row: why}`` in ``why``); rows it does
    not select must be in ``drops``. ``must_keep``: rows a later stage has to select (keep-all
    sources). ``table_reasons`` shortens a drop reason for the stage table (the manifest keeps the
    full one). ``annotations`` go onto rows' manifest lines whatever their final decision (the
    attempts' verdicts). ``note`` goes to the table and summary.
    """

    drops: Drops = field(default_factory=dict)
    note: str = ""
    selected: tuple[Row, ...] | None = None
    why: dict[int, str] = field(default_factory=dict)
    must_keep: frozenset[int] = frozenset()
    table_reasons: dict[str, str] = field(default_factory=dict)
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StageContext:
    """What the stages share: the configuration, the optional embedder and attempts runner, and what
    earlier stages passed on (``must_keep`` from ``difficulty``)."""

    cfg: CurateConfig
    embedder: SentenceEmbedder | None
    attempts: AttemptsRunner | None = None
    must_keep: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Stage:
    """One row of the stage table: ``run`` decides, ``enabled`` says whether the stage exists in this
    run at all (``embed_dedup`` only with an embedder; absent stages leave no table line), and
    ``on_skip`` is what the stage does when named in ``skip`` (default: pass every row, note
    "skipped")."""

    name: str
    run: Callable[[list[Row], StageContext], StageOutcome]
    enabled: Callable[[StageContext], bool] = lambda ctx: True
    on_skip: Callable[[list[Row], StageContext], StageOutcome] | None = None


def assign_domains(rows: list[Row], method: str, embedder: SentenceEmbedder | None) -> str:
    """Fill ``row.domain``; return the method used (reported in the run summary)."""
    have_column = any(r.domain for r in rows)
    if method == "auto":
        method = "column" if have_column else ("embeddings" if embedder is not None else "keywords")
    if method == "column":
        if not have_column:
            raise ConfigFieldError(
                "`domain_method` column: the pool has no domain column; use keywords or embeddings",
                "domain_method",
            )
        for r in rows:
            r.domain = r.domain or domains.GENERAL
    elif method == "keywords":
        for r in rows:
            r.domain = domains.classify_keywords(r.question or "")
    elif method == "embeddings":
        if embedder is None:
            raise ConfigFieldError(
                "`domain_method` embeddings needs `embedder` (a sentence-embedding model)",
                "domain_method",
                "embedder",
            )
        for r, d in zip(
            rows, domains.classify_embeddings([r.question or "" for r in rows], embedder), strict=True
        ):
            r.domain = d
    else:
        raise ConfigFieldError(
            f"`domain_method` {method!r}: use auto, column, keywords or embeddings", "domain_method"
        )
    return method


# ------------------------------------------------------------------------------------------- stages


def _quality(rows: list[Row], ctx: StageContext) -> StageOutcome:
    return StageOutcome(quality.quality_reasons(rows, ctx.cfg.quality))


def _correctness(rows: list[Row], ctx: StageContext) -> StageOutcome:
    cfg = ctx.cfg
    res = correctness.check_traces(
        rows, strict=cfg.strict_correctness, workers=cfg.grading_workers, progress=cfg.progress
    )
    return StageOutcome(res.drops, res.note())


def _decontam(rows: list[Row], ctx: StageContext) -> StageOutcome:
    cfg = ctx.cfg
    if not cfg.eval_files:
        return StageOutcome(note="no evaluation sets given (eval_files is empty)")
    evals = decontam.EvalSet.load(cfg.eval_files)
    res = decontam.decontaminate(rows, evals, n=cfg.ngram, min_shared=cfg.min_shared_ngrams)
    return StageOutcome(
        res.drops, f"{res.num_eval_items} eval items, {res.num_eval_ngrams} {cfg.ngram}-grams"
    )


def _exact_dedup(rows: list[Row], ctx: StageContext) -> StageOutcome:
    return StageOutcome(dedup.exact_dedup(rows, ctx.cfg.keep))


def _near_dedup(rows: list[Row], ctx: StageContext) -> StageOutcome:
    return StageOutcome(dedup.near_dedup(rows, ctx.cfg.near, ctx.cfg.keep))


def _embed_dedup(rows: list[Row], ctx: StageContext) -> StageOutcome:
    assert ctx.embedder is not None  # the stage is enabled only with an embedder
    vectors = ctx.embedder([r.question or "" for r in rows])
    return StageOutcome(dedup.embedding_dedup(rows, vectors, ctx.cfg.embed_threshold, ctx.cfg.keep))


def _attempts(rows: list[Row], ctx: StageContext) -> StageOutcome:
    assert ctx.attempts is not None  # the stage is enabled only with a runner
    out = attempts.run_attempts(rows, ctx.attempts)
    attempted = len(rows) - out.not_attempted
    return StageOutcome(
        note=attempts.note(out, ctx.attempts, attempted),
        annotations={row: {"attempts": v} for row, v in out.verdicts.items()},
    )


def _difficulty(rows: list[Row], ctx: StageContext) -> StageOutcome:
    res = difficulty.select_difficult(rows, ctx.cfg.difficulty)
    return StageOutcome(res.drops, res.note, must_keep=frozenset(res.must_keep))


NOT_SAMPLED = "not sampled (final size k reached)"


def _diversity(rows: list[Row], ctx: StageContext) -> StageOutcome:
    cfg = ctx.cfg
    selected, why = diversity.diversity_sample(
        rows, cfg.k, seed=cfg.seed, length=diversity.rank_length, must_keep=set(ctx.must_keep)
    )
    chosen = {r.row for r in selected}
    drops: Drops = {r.row: (NOT_SAMPLED, {"domain": r.domain}) for r in rows if r.row not in chosen}
    return StageOutcome(
        drops,
        f"k={cfg.k} seed={cfg.seed}",
        selected=tuple(selected),
        why=why,
        table_reasons={NOT_SAMPLED: "not sampled"},
    )


def _all_survivors(rows: list[Row], ctx: StageContext) -> StageOutcome:
    """``diversity`` skipped: every survivor is selected, in input order."""
    why = {r.row: "all survivors (diversity skipped)" for r in rows}
    return StageOutcome(note=f"k={ctx.cfg.k} seed={ctx.cfg.seed}", selected=tuple(rows), why=why)


PIPELINE: tuple[Stage, ...] = (
    Stage("quality", _quality),
    Stage("correctness", _correctness),
    Stage("decontam", _decontam),
    Stage("exact_dedup", _exact_dedup),
    Stage("near_dedup", _near_dedup),
    Stage("embed_dedup", _embed_dedup, enabled=lambda ctx: ctx.embedder is not None),
    Stage("attempts", _attempts, enabled=lambda ctx: ctx.attempts is not None),
    Stage("difficulty", _difficulty),
    Stage("diversity", _diversity, on_skip=_all_survivors),
)
STAGES: tuple[str, ...] = tuple(s.name for s in PIPELINE)


# ------------------------------------------------------------------------------------------- runner


def apply(stage: Stage, rows: list[Row], ctx: StageContext, manifest: Manifest) -> list[Row]:
    """Run one stage on ``rows``: record its drops (and, for a final stage, its selection) in the
    manifest and its line in the stage table; return the rows that go on (the selection, in order,
    for a final stage)."""
    skipped = stage.name in ctx.cfg.skip
    if skipped and stage.on_skip is None:
        manifest.stages.append(StageStats(stage.name, len(rows), len(rows), note="skipped"))
        return rows
    t0 = time.perf_counter()
    run = stage.on_skip if skipped and stage.on_skip is not None else stage.run
    out = run(rows, ctx)
    ctx.must_keep = ctx.must_keep | out.must_keep
    for row, extra in out.annotations.items():
        manifest.annotate(row, extra)
    reasons: Counter[str] = Counter()
    survivors = []
    for r in tqdm(
        rows, desc="manifest", disable=not (ctx.cfg.progress and out.selected is not None), unit="row"
    ):
        if r.row in out.drops:
            reason, detail = out.drops[r.row]
            manifest.drop(r, stage.name, reason, detail)
            reasons[out.table_reasons.get(reason, reason)] += 1
        else:
            survivors.append(r)
    if out.selected is not None:
        if {r.row for r in out.selected} != {r.row for r in survivors}:
            raise RuntimeError(f"stage {stage.name}: its selection and its drops do not cover its rows")
        for r in out.selected:
            manifest.keep(r, stage.name, out.why[r.row], {"domain": r.domain})
        survivors = list(out.selected)
    timing = "" if out.selected is not None else f"{time.perf_counter() - t0:.2f}s"
    text = " ".join(x for x in (out.note, timing) if x)
    domains_out = Counter(r.domain or "" for r in survivors)
    manifest.stages.append(StageStats(stage.name, len(rows), len(survivors), reasons, domains_out, text))
    return survivors


def run_pipeline(
    pool: Pool,
    cfg: CurateConfig,
    embedder: SentenceEmbedder | None = None,
    attempts: AttemptsRunner | None = None,
) -> CurateResult:
    """Run every enabled stage of :data:`PIPELINE` in order over the pool; the last stage selects.

    ``embedder`` enables ``embed_dedup`` (and ``domain_method="embeddings"``); ``attempts`` enables the
    attempts stage (see :mod:`s1kit.curate.attempts`), whose correctness columns ``difficulty`` reads.
    """
    unknown = cfg.skip - set(STAGES)
    if unknown:
        raise ConfigFieldError(f"`skip` {sorted(unknown)}: stages are {', '.join(STAGES)}", "skip")
    manifest = Manifest.from_pool(pool)
    alive = list(pool.rows)
    method = assign_domains(alive, cfg.domain_method, embedder)
    manifest.stages.append(
        StageStats(
            "load", pool.num_input_rows, len(alive), Counter(i.reason.split(":")[0] for i in pool.issues)
        )
    )
    ctx = StageContext(cfg, embedder, attempts)
    for stage in PIPELINE:
        if stage.enabled(ctx):
            alive = apply(stage, alive, ctx, manifest)
    manifest.check_complete()
    return CurateResult(alive, manifest, method, {"domains": method})


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
