"""Teacher traces: a thinking trace and an answer per question, kept only when the answer is right.

``s1kit distill`` (s1.1 style: an R1-like ``<think>`` teacher, or any model with s1 delimiters):

1. load the input (any pool format :func:`s1kit.curate.load_pool` reads, e.g. curate's
   ``selected.jsonl``); unreadable lines are dropped by ``load`` with the reason;
2. rows without a question or a reference answer are dropped by ``input``;
3. the teacher generates one trace per question with budget forcing, through one engine backend in
   batches, every finished batch appended to the generation cache (a killed run resumes from there:
   nothing is generated twice; a rerun with other settings generates only what is new);
4. each generation is split at the first end-of-thinking delimiter into the thinking trace and the
   answer, and graded against the reference answer with eval's grading; it is kept only when it
   grades correct (LIMO's rule), else dropped by ``distill`` with the reason (disagrees, no final
   answer, thinking never ended, grading timed out, grading failed, prompt too long);
5. the kept rows are written in the format ``s1kit train`` reads by default: the input row's
   columns plus ``thinking_trajectories`` (the trace), ``attempt`` (the answer), ``teacher`` and
   ``teacher_thinking_tokens``;
   the manifest (``<out stem>.manifest.jsonl``) has one line per input row, kept or dropped, with
   the reason, the verdict and the extracted answer. Both files are written atomically, the
   manifest first.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s1kit import _io
from s1kit.curate.loaders import load_pool
from s1kit.curate.manifest import Manifest, StageStats
from s1kit.distill.attempts import grade_generations
from s1kit.distill.cache import GenerationCache
from s1kit.distill.generations import (
    EngineOnDemand,
    GenerationSettings,
    GenerationStats,
    PromptMaker,
)
from s1kit.distill.generations import generate_cached as _generate_cached

if TYPE_CHECKING:
    from collections.abc import Callable

    from s1kit.backends import EngineOptions
    from s1kit.budget.delimiters import Delimiters

KEPT = "answer agrees with the reference (trace kept)"
REASONS: dict[str, str] = {
    "wrong": "answer disagrees with the reference",
    "no_answer": "no final answer in the generation",
    "prompt_too_long": "prompt too long for the engine (raise --max-len)",
    "grading_error": "grading failed",
}


def manifest_path(out: Path) -> Path:
    """Where the manifest of ``out`` goes: ``<out stem>.manifest.jsonl`` beside it."""
    return out.with_name(f"{out.stem}.manifest.jsonl")


def default_cache_path(out: Path) -> Path:
    """The default generation cache of ``out``: ``<out stem>.generations.jsonl`` beside it."""
    return out.with_name(f"{out.stem}.generations.jsonl")


@dataclass(frozen=True)
class DistillConfig:
    """``teacher`` (a model folder or name, as ``--teacher``), ``cache_path`` (the generation cache;
    the CLI's default is :func:`default_cache_path`), ``settings`` (budget forcing and
    sampling), ``delimiters`` (None: detected from the teacher's tokenizer; or a function of the
    tokenizer, as the CLI's delimiter flags give), engine and grading options."""

    teacher: str
    cache_path: Path
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    delimiters: Callable[[Any], Delimiters] | None = None
    engine: str = "s1kit"
    options: EngineOptions | None = None
    grading_workers: int = 1
    grading_timeout_s: float = 5.0
    progress: bool = False


@dataclass
class DistillResult:
    kept: list[dict[str, Any]]
    manifest: Manifest
    stats: GenerationStats
    delimiters: Delimiters


def split_generation(text: str, delimiters: Delimiters) -> tuple[str, str] | None:
    """``(thinking, answer)`` split at the first end-of-thinking delimiter, or None when thinking never
    ended. For s1 delimiters the ``answer`` role name after ``<|im_start|>`` is dropped."""
    hits = [(i, e) for e in delimiters.think_end if e and (i := text.find(e)) >= 0]
    if not hits:
        return None
    i, end = min(hits)
    thinking, answer = text[:i], text[i + len(end) :]
    if delimiters.style == "s1" and answer.startswith("answer"):
        answer = answer[len("answer") :]
    return thinking.strip(), answer.strip()


def distill(in_path: Path, cfg: DistillConfig) -> DistillResult:
    """Generate, grade and select traces for every row of ``in_path`` (see the module docstring)."""
    pool = load_pool([in_path])
    manifest = Manifest.from_pool(pool)
    manifest.stages.append(StageStats("load", pool.num_input_rows, len(pool.rows)))
    usable = [r for r in pool.rows if r.question and r.answer]
    for r in pool.rows:
        if not (r.question and r.answer):
            manifest.drop(r, "input", "no question or no reference answer")
    manifest.stages.append(StageStats("input", len(pool.rows), len(usable)))
    cache = GenerationCache(cfg.cache_path)
    with EngineOnDemand(cfg.engine, cfg.teacher, cfg.options) as engine:
        tokenizer = engine.tokenizer()
        delims = cfg.delimiters(tokenizer) if cfg.delimiters is not None else None
        maker = PromptMaker(cfg.teacher, tokenizer, cfg.settings, delims)
        jobs = maker.jobs([(r.row, r.question or "") for r in usable], 1)
        stats = _generate_cached(
            engine.get, maker, jobs, cache, desc="traces", progress=cfg.progress, kill_point="distill.batch"
        )
    by_row = {r.row: r for r in usable}
    graded = grade_generations(
        jobs, cache, by_row, workers=cfg.grading_workers, timeout_s=cfg.grading_timeout_s
    )
    kept: list[dict[str, Any]] = []
    for j, g in zip(jobs, graded, strict=True):
        row, rec, v = by_row[j.row], cache.records[j.key], g.verdict
        detail: dict[str, Any] = {
            "verdict": v,
            "task": g.task,
            "extracted": None if g.extracted is None else g.extracted[:200],
            "reference": (row.answer or "")[:200],
            "finish_reason": rec["finish_reason"],
            "thinking_tokens": rec.get("thinking_tokens", 0),
        }
        parts = split_generation(rec["text"], maker.delimiters) if v != "prompt_too_long" else None
        if v == "correct" and parts is not None:
            thinking, answer = parts
            kept.append(
                {
                    **row.to_record(),
                    "thinking_trajectories": thinking,
                    "attempt": answer,
                    "teacher": cfg.teacher,
                    "teacher_thinking_tokens": rec.get("thinking_tokens", 0),
                }
            )
            manifest.keep(row, "distill", KEPT, detail)
        elif v == "timeout":
            reason = f"grading timed out after {cfg.grading_timeout_s:g}s (answer not verified)"
            manifest.drop(row, "distill", reason, {**detail, "timed_out": True})
        elif parts is None and v != "prompt_too_long":
            manifest.drop(
                row, "distill", "thinking never ended (no answer part; raise --max-new-tokens)", detail
            )
        else:
            manifest.drop(
                row, "distill", REASONS[v] + (f": {g.error}" if v == "grading_error" else ""), detail
            )
    reasons = Counter(
        d.reason for d in manifest.decisions.values() if d.stage == "distill" and d.status == "dropped"
    )
    manifest.stages.append(StageStats("distill", len(usable), len(kept), reasons, note=stats.describe()))
    manifest.check_complete()
    return DistillResult(kept, manifest, stats, maker.delimiters)


def write_outputs(result: DistillResult, out: Path) -> dict[str, Path]:
    """The manifest, then the kept rows (JSON Lines), each written atomically."""
    out = Path(out)
    paths = {"traced": out, "manifest": manifest_path(out)}
    _io.write_with(paths["manifest"], result.manifest.write)
    _io.kill_point("distill.commit")
    _io.write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.kept))
    return paths
