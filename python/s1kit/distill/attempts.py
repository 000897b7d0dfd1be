"""Attempts by reference models, graded as ``s1kit eval`` grades: the implementation of
:class:`s1kit.curate.attempts.AttemptsRunner` that ``s1kit curate --attempts`` wires in.

For each model in turn: one engine backend (``s1kit.backends.load_backend``, started only when the
cache lacks a generation), every question's ``attempts_per_question`` attempts batched through it
(:func:`~s1kit.distill.generations.generate_cached`), the engine closed, then every attempt graded
with eval's grading (:func:`s1kit.eval.grading.extract_answer` and a
:class:`~s1kit.eval.grading.GradingPool`, whose hard per-item time limit turns a hanging comparison
into a ``timeout`` verdict). The grading task per row is curation's
(:func:`s1kit.curate.correctness.task_for`: letters, AIME integers, AMC, else math-verify).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s1kit.curate.attempts import Verdicts
from s1kit.curate.correctness import task_for
from s1kit.curate.schema import Row
from s1kit.distill.cache import GenerationCache
from s1kit.distill.generations import (
    PROMPT_TOO_LONG,
    EngineOnDemand,
    GenerationSettings,
    GenerationStats,
    Job,
    PromptMaker,
    generate_cached,
)

if TYPE_CHECKING:
    from s1kit.backends import Backend, EngineOptions


@dataclass(frozen=True)
class AttemptsConfig:
    """``models`` as given to ``--attempts`` (also the names of their correctness columns); ``engine``
    and ``options`` as ``s1kit eval``'s ``--engine`` flags; ``cache_path`` the generation cache."""

    models: tuple[str, ...]
    cache_path: Path
    attempts_per_question: int = 1
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    engine: str = "s1kit"
    options: EngineOptions | None = None
    grading_workers: int = 1
    grading_timeout_s: float = 5.0
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.models or any(not m for m in self.models):
            raise ValueError(f"models={list(self.models)}: name at least one model, none empty")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models={list(self.models)}: a model is named twice")
        if self.attempts_per_question < 1:
            raise ValueError(f"attempts_per_question={self.attempts_per_question}: use 1 or more")
        if self.grading_workers < 1:
            raise ValueError(f"grading_workers={self.grading_workers}: use 1 or more")


@dataclass(frozen=True)
class Graded:
    """One generation graded: its verdict, the grading task, the extracted answer, the grader's error."""

    verdict: str
    task: str
    extracted: str | None
    error: str | None = None


def grade_generations(
    jobs: Sequence[Job], cache: GenerationCache, rows: Mapping[int, Row], *, workers: int, timeout_s: float
) -> list[Graded]:
    """Grade every job's cached generation against its row's reference answer as ``s1kit eval``
    grades (``extract_answer``, then a :class:`~s1kit.eval.grading.GradingPool` of
    ``workers`` processes with the hard limit ``timeout_s`` per comparison)."""
    from s1kit.eval import grading

    recs = [cache.records[j.key] for j in jobs]
    tasks = [task_for(rows[j.row], grading) for j in jobs]
    extracted = [
        grading.extract_answer(rec["text"], t) if rec["finish_reason"] != PROMPT_TOO_LONG else None
        for rec, t in zip(recs, tasks, strict=True)
    ]
    with grading.GradingPool(workers=workers, timeout_s=timeout_s) as pool:
        graded = pool.grade(
            [(x, rows[j.row].answer or "", t) for j, x, t in zip(jobs, extracted, tasks, strict=True)]
        )
    return [
        Graded(verdict(g, x, rec["finish_reason"]), t, x, g.error)
        for rec, t, x, g in zip(recs, tasks, extracted, graded, strict=True)
    ]


def verdict(grade: Any, extracted: str | None, finish_reason: str) -> str:
    """One attempt's verdict (see :data:`s1kit.curate.attempts.VERDICTS`)."""
    if finish_reason == PROMPT_TOO_LONG:
        return "prompt_too_long"
    if extracted is None:
        return "no_answer"
    if grade.correct:
        return "correct"
    if grade.timed_out:
        return "timeout"
    if grade.error:
        return "grading_error"
    return "wrong"


class BackendAttempts:
    """Attempts through :mod:`s1kit.backends`, one backend per model, cached on disk."""

    def __init__(self, cfg: AttemptsConfig, loaded: Mapping[str, Backend] | None = None) -> None:
        """``loaded``: engines the caller started (by model name), used instead of starting them and
        left open."""
        self.cfg = cfg
        self.loaded = dict(loaded or {})
        self.models = cfg.models
        self.attempts_per_question = cfg.attempts_per_question
        self.stats: dict[str, GenerationStats] = {}

    def attempt(self, rows: Sequence[Row]) -> Verdicts:
        cfg = self.cfg
        cache = GenerationCache(cfg.cache_path)
        out: Verdicts = {r.row: {} for r in rows}
        by_row = {r.row: r for r in rows}
        for model in cfg.models:
            with EngineOnDemand(cfg.engine, model, cfg.options, self.loaded.get(model)) as engine:
                maker = PromptMaker(model, engine.tokenizer(), cfg.settings)
                jobs = maker.jobs([(r.row, r.question or "") for r in rows], cfg.attempts_per_question)
                self.stats[model] = generate_cached(
                    engine.get,
                    maker,
                    jobs,
                    cache,
                    desc=f"attempts {model}",
                    progress=cfg.progress,
                    kill_point="attempts.batch",
                )
            for j, g in zip(
                jobs,
                grade_generations(
                    jobs, cache, by_row, workers=cfg.grading_workers, timeout_s=cfg.grading_timeout_s
                ),
                strict=True,
            ):
                out[j.row].setdefault(model, []).append(g.verdict)
        return out

    def describe(self) -> str:
        return "; ".join(f"{m}: {s.describe()}" for m, s in self.stats.items())
