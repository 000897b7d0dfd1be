"""Runs the methods' sweeps on the benchmarks through any engine (:class:`s1kit.backends.Backend`), resumably.

Output: ``<out>/samples/<task>/<method>.jsonl``, one :class:`~s1kit.eval.samples.SampleRecord` per line
(its docstring is the file's schema: prompt, full generation, extracted answer, gold, correct, thinking /
answer / forced tokens, finish reason, seed, engine, prefill tokens, ...). Lines are
appended and fsync'ed after every engine call of at most ``chunk_size`` requests (default: the engine's
``max_batch``, so a call is one batch in flight). A rerun reads what is there, skips every finished
generation and continues: a crash loses at most the batch in flight. A torn last line (a crash while
writing) is dropped on reading.

A prompt too long for the engine (``len(prompt) >= engine.max_len``) does not stop the run: that
sample is stored with ``finish_reason`` ``"prompt_too_long"``, an empty generation, ``correct``
false and an ``error`` message, and every other sample is generated as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s1kit.backends.base import Backend
from s1kit.backends.forcing import FORCING_MODES, Cost, generate_forced
from s1kit.budget.delimiters import Delimiters, choose_delimiters
from s1kit.budget.spelling import newline_token_ids
from s1kit.errors import ConfigError
from s1kit.eval.grading import GradingPool, extract_answer
from s1kit.eval.methods import (
    Setting,
    SweepConfig,
    check_methods,
    count_steps,
    generation_key,
    needs_more,
    sample_seed,
    sweep,
    thinking_tokens,
)
from s1kit.eval.samples import PROMPT_TOO_LONG as PROMPT_TOO_LONG
from s1kit.eval.samples import SampleRecord, SampleStore, samples_path
from s1kit.eval.samples import group_records as group_records
from s1kit.eval.samples import read_samples as read_samples
from s1kit.eval.tasks import Problem

if TYPE_CHECKING:
    from s1kit.generate import Engine
    from s1kit.generate.types import Request, Result

# ---------------------------------------------------------------------------------------------- prompts


def build_prompt(tokenizer: Any, problem: Problem, instruction: str, delimiters: Delimiters) -> str:
    """The chat-formatted prompt text, ending where the model starts thinking."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "the tokenizer has no chat template; save one with the model (tokenizer.chat_template) so "
            "prompts are formatted as the model was trained"
        )
    user = problem.prompt if not instruction else f"{problem.prompt}\n\n{instruction}"
    text: str = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    return delimiters.open_thinking(text)


# ----------------------------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class RunConfig:
    """How a run generates and grades (the sweep values are in :class:`SweepConfig`).

    ``delimiters`` are the model's thinking delimiters; ``None`` takes those of the named ``style``.
    ``forcing`` is how budget forcing runs: ``inloop`` (in the engine's decode loop) or ``reprompt``
    (s1's way, one engine call per extension; :mod:`s1kit.backends.forcing`).
    """

    style: str = "s1"
    delimiters: Delimiters | None = None
    seed: int = 42
    chunk_size: int | None = None
    grading_workers: int = 1
    grading_timeout_s: float = 5.0
    forcing: str = "inloop"

    def __post_init__(self) -> None:
        if self.forcing not in FORCING_MODES:
            raise ValueError(f"forcing={self.forcing!r}: choose one of {', '.join(FORCING_MODES)}")


@dataclass
class _Job:
    setting: Setting
    problem: Problem
    index: int
    prompt: str
    prompt_ids: list[int]


class EvalRunner:
    """Generates, grades and stores every sweep point of the given methods on the given problems.

    ``engine`` is any :class:`~s1kit.backends.Backend` (:func:`s1kit.backends.load_backend`); a bare
    :class:`s1kit.generate.Engine` runs as s1kit's backend.
    """

    def __init__(
        self,
        engine: Backend | Engine,
        out_dir: Path,
        sweep_cfg: SweepConfig,
        run_cfg: RunConfig | None = None,
    ) -> None:
        if not isinstance(engine, Backend):
            # A bare s1kit.generate.Engine (the API before backends existed) runs as --engine s1kit.
            from s1kit.backends.own import OwnBackend

            engine = OwnBackend(engine)
        self.engine: Backend = engine
        self.tokenizer: Any = engine.tokenizer
        self.out_dir = Path(out_dir)
        self.sweep_cfg = sweep_cfg
        self.cfg = run_cfg or RunConfig()
        self.delimiters = self.cfg.delimiters or choose_delimiters(self.tokenizer, style=self.cfg.style)
        self.chunk_size = self.cfg.chunk_size or int(engine.max_batch)
        if self.chunk_size < 1:
            raise ValueError(
                f"chunk_size={self.chunk_size} must be >= 1 (or None for the engine's max_batch)"
            )
        # The model's vocabulary may exceed the tokenizer's; backends that know it say so.
        vocab: int | None = getattr(engine, "vocab_size", None)
        self.base_spec = self.delimiters.spec(self.tokenizer, vocab_size=vocab)
        self._prompt_cache: dict[tuple[str, str, str], tuple[str, list[int]]] = {}
        # Token ids that end a line, for the caps' grace tokens (only read when a run uses them).
        self._newline_ids = newline_token_ids(self.tokenizer) if sweep_cfg.grace_tokens else ()

    def _prompt(self, problem: Problem, instruction: str) -> tuple[str, list[int]]:
        key = (problem.task, problem.id, instruction)
        if key not in self._prompt_cache:
            text = build_prompt(self.tokenizer, problem, instruction, self.delimiters)
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))
            self._prompt_cache[key] = (text, ids)
        return self._prompt_cache[key]

    def _pending(
        self, settings: Sequence[Setting], problems: Sequence[Problem], store: SampleStore
    ) -> list[_Job]:
        jobs: list[_Job] = []
        seen: set[tuple[str, str, int]] = set()
        for s in settings:
            for p in problems:
                key, _ = generation_key(s, 0)
                recs = store.get(key, p.id)
                if not needs_more(s, recs):
                    continue
                # Rejection sampling decides after each try; the others know all they need now.
                last = len(recs) + 1 if s.method == "rejection_sampling" else s.samples
                for i in range(len(recs), last):
                    if (key, p.id, i) in seen:
                        continue
                    seen.add((key, p.id, i))
                    text, ids = self._prompt(p, s.instruction)
                    jobs.append(_Job(s, p, i, text, ids))
        return jobs

    def _request(self, job: _Job) -> Request:
        from s1kit.generate.types import Request, SamplingParams

        s = job.setting
        # The caps' grace comes with the tokens that end a line (only where a setting has one).
        grace = (
            {"grace_tokens": s.grace_tokens, "newline_tokens": self._newline_ids} if s.grace_tokens else {}
        )
        spec = self.base_spec.replace(
            max_thinking_tokens=s.max_thinking_tokens,
            num_extensions=s.num_extensions,
            max_answer_tokens=self.sweep_cfg.max_answer_tokens,
            **grace,
        )
        if s.max_thinking_tokens is None and s.num_extensions == 0:
            # Only counting: without an answer prefix the spec never forces anything, not even when
            # the model ends its thinking with EOS.
            spec = spec.replace(answer_prefix=())
        key, _ = generation_key(s, job.index)
        seed = sample_seed(self.cfg.seed, job.problem.task, job.problem.id, s.method, key, job.index)
        return Request(
            prompt_ids=job.prompt_ids,
            sampling=SamplingParams(temperature=s.temperature, seed=seed, max_new_tokens=s.max_new_tokens),
            budget=spec,
            request_id=f"{job.problem.task}|{s.method}|{key}|{job.problem.id}|{job.index}",
        )

    def _record(self, job: _Job, result: Result, seed: int | None, cost: Cost) -> SampleRecord:
        s = job.setting
        key, _ = generation_key(s, job.index)
        return {
            "task": job.problem.task,
            "grading": job.problem.grade_mode,
            "method": s.method,
            "key": key,
            "label": s.label if s.method != "majority_voting" else "votes",
            "problem_id": job.problem.id,
            "index": job.index,
            "seed": seed,
            "prompt": job.prompt,
            "prompt_tokens": len(job.prompt_ids),
            "engine": self.engine.name,
            "forcing": self.cfg.forcing,
            "prefill_tokens": cost.prefill_tokens,
            "engine_calls": cost.engine_calls,
            "generation": result.text,
            "extracted": extract_answer(result.text, job.problem.grade_mode),
            "gold": job.problem.answer,
            "correct": False,
            "grading_timed_out": False,
            "thinking_tokens": thinking_tokens(
                int(result.thinking_tokens), int(result.answer_tokens), result.finish_reason
            ),
            "answer_tokens": int(result.answer_tokens),
            "forced_tokens": int(result.forced_tokens),
            "extensions_used": int(result.extensions_used),
            "capped": bool(result.capped),
            "generated_tokens": len(result.token_ids),
            "token_ids": [int(t) for t in result.token_ids],
            "finish_reason": result.finish_reason,
            "steps": count_steps(result.text, self.delimiters.think_end),
            "max_thinking_tokens": s.max_thinking_tokens,
            "num_extensions": s.num_extensions,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "decode_tokens_per_s": float(result.decode_tokens_per_s),
        }

    def run(
        self, problems_by_task: dict[str, Sequence[Problem]], methods: Sequence[str], *, progress: bool = True
    ) -> int:
        """Generate everything missing; returns how many generations this call produced."""
        from tqdm.auto import tqdm

        methods = check_methods(methods)
        produced = 0
        with GradingPool(workers=self.cfg.grading_workers, timeout_s=self.cfg.grading_timeout_s) as pool:
            for task, problems in problems_by_task.items():
                stores = {m: SampleStore(samples_path(self.out_dir, task, m)) for m in methods}
                settings = {m: sweep(m, self.sweep_cfg) for m in methods}
                pending = {m: self._pending(settings[m], problems, stores[m]) for m in methods}
                bar = tqdm(
                    total=sum(len(j) for j in pending.values()), desc=task, unit="gen", disable=not progress
                )
                for m in methods:
                    jobs = pending[m]
                    while jobs:
                        for start in range(0, len(jobs), self.chunk_size):
                            chunk = jobs[start : start + self.chunk_size]
                            produced += self._run_chunk(chunk, stores[m], pool)
                            bar.update(len(chunk))
                        jobs = self._pending(
                            settings[m], problems, stores[m]
                        )  # rejection sampling's next tries
                        bar.total += len(jobs)
                        bar.refresh()
                bar.close()
        return produced

    def _run_chunk(self, chunk: Sequence[_Job], store: SampleStore, pool: GradingPool) -> int:
        from s1kit.generate.types import Result

        requests = [self._request(j) for j in chunk]
        max_len = self.engine.max_len
        # A prompt that leaves no room to generate is that sample's outcome, not the run's end.
        too_long = {
            req.request_id for req in requests if max_len is not None and len(req.prompt_ids) >= max_len
        }
        fitting = [req for req in requests if req.request_id not in too_long]
        outputs = generate_forced(self.engine, fitting, self.cfg.forcing) if fitting else []
        by_id = {result.request_id: (result, cost) for result, cost in outputs}
        for req in requests:
            if req.request_id in too_long:
                empty = Result(req.request_id, list(req.prompt_ids), [], "", PROMPT_TOO_LONG)
                by_id[req.request_id] = (empty, Cost(prefill_tokens=0, engine_calls=0))
        records: list[SampleRecord] = []
        for j, req in zip(chunk, requests, strict=True):
            result, cost = by_id[req.request_id]
            records.append(self._record(j, result, req.sampling.seed, cost))
        for rec in records:
            if rec["finish_reason"] == PROMPT_TOO_LONG:
                rec["error"] = (
                    f"prompt of {rec['prompt_tokens']} tokens does not fit the engine's max_len={max_len} "
                    "with room to generate (raise --max-len)"
                )
        graded = pool.grade([(r["extracted"], r["gold"], r["grading"]) for r in records])
        for rec, g in zip(records, graded, strict=True):
            rec["correct"] = g.correct
            rec["grading_timed_out"] = g.timed_out
        store.append(records)
        return len(records)
