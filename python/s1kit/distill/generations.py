"""Batched, cached, budget-forced generation for the distill stages: prompts, requests, one engine.

A :class:`GenerationSettings` fixes how every prompt is continued (thinking budget, extensions, answer
cap, token limit, temperature, seed). :class:`PromptMaker` formats a question exactly as ``s1kit eval``
does (:func:`s1kit.eval.runner.build_prompt`: the tokenizer's chat template, then thinking opened with
the model's delimiters) and builds the :class:`~s1kit.budget.BudgetSpec` as eval does.
:func:`generate_cached` runs the jobs the cache lacks through one
:class:`~s1kit.backends.Backend` in batches of its ``max_batch``, appending each finished batch to the
:class:`~s1kit.distill.cache.GenerationCache` (so a kill loses at most one batch), with a progress bar
that shows the ETA.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from s1kit.budget.delimiters import Delimiters, choose_delimiters
from s1kit.distill.cache import GenerationCache, generation_key

if TYPE_CHECKING:
    from s1kit.backends import Backend, EngineOptions
    from s1kit.budget import BudgetSpec
    from s1kit.generate.types import Request

# finish_reason of a job whose prompt does not fit the engine (nothing generated); as s1kit eval's.
PROMPT_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class GenerationSettings:
    """How every prompt is continued. ``max_thinking_tokens`` None: no cap (the model ends its
    thinking itself); ``num_extensions``: ends of thinking suppressed with an extension ("Wait");
    ``max_answer_tokens`` caps the answer after thinking; ``max_new_tokens`` counts everything
    generated. ``temperature`` 0 is greedy; ``seed`` seeds every attempt's own sampling seed."""

    max_thinking_tokens: int | None = 2048
    num_extensions: int = 0
    max_answer_tokens: int | None = 512
    max_new_tokens: int = 4096
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < 1:
            raise ValueError(f"max_thinking_tokens={self.max_thinking_tokens}: use 1 or more (or None)")
        if self.num_extensions < 0:
            raise ValueError(f"num_extensions={self.num_extensions}: use 0 or more")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: use 1 or more")
        if self.max_thinking_tokens is not None and self.max_thinking_tokens >= self.max_new_tokens:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens} leaves no room to answer after "
                f"max_thinking_tokens={self.max_thinking_tokens}: raise max_new_tokens above it"
            )
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature={self.temperature}: use 0 (greedy) or more")


@dataclass(frozen=True)
class Job:
    """One generation to have: attempt ``index`` of question ``row``."""

    row: int
    index: int
    prompt: str
    prompt_ids: tuple[int, ...]
    key: str
    seed: int


class PromptMaker:
    """Prompts, budget specs and cache keys for one model (its tokenizer and delimiters)."""

    def __init__(
        self, model: str, tokenizer: Any, settings: GenerationSettings, delimiters: Delimiters | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.delimiters = delimiters or choose_delimiters(tokenizer)
        self.key_settings = {**asdict(settings), "delimiters": self.delimiters.to_record()}
        self._spec: BudgetSpec | None = None

    def spec(self, vocab_size: int | None) -> BudgetSpec:
        """The budget spec of every request (built once, for the loaded model's vocabulary size)."""
        if self._spec is None:
            s = self.settings
            spec = self.delimiters.spec(self.tokenizer, vocab_size=vocab_size).replace(
                max_thinking_tokens=s.max_thinking_tokens,
                num_extensions=s.num_extensions,
                max_answer_tokens=s.max_answer_tokens,
            )
            if s.max_thinking_tokens is None and s.num_extensions == 0:
                spec = spec.replace(answer_prefix=())  # as s1kit eval: only counting, nothing forced
            self._spec = spec
        return self._spec

    def prompt(self, question: str) -> tuple[str, tuple[int, ...]]:
        from s1kit.eval.runner import build_prompt
        from s1kit.eval.tasks import Problem

        text = build_prompt(self.tokenizer, Problem("math", "", question, ""), "", self.delimiters)
        return text, tuple(int(t) for t in self.tokenizer.encode(text, add_special_tokens=False))

    def jobs(self, rows: Sequence[tuple[int, str]], attempts: int) -> list[Job]:
        """``attempts`` jobs for each ``(row, question)``."""
        out = []
        for row, question in rows:
            text, ids = self.prompt(question)
            for i in range(attempts):
                key = generation_key(self.model, ids, self.key_settings, i)
                seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1
                out.append(Job(row, i, text, ids, key, seed))
        return out

    def request(self, job: Job, vocab_size: int | None) -> Request:
        from s1kit.generate.types import Request, SamplingParams

        s = self.settings
        return Request(
            prompt_ids=job.prompt_ids,
            sampling=SamplingParams(
                temperature=s.temperature, seed=job.seed, max_new_tokens=s.max_new_tokens
            ),
            budget=self.spec(vocab_size),
            request_id=job.key,
        )


class EngineOnDemand:
    """One model's engine, started on first :meth:`get` (never, when the cache holds everything) and
    closed at the end of the ``with`` block. :meth:`tokenizer` reads the model's tokenizer without
    starting the engine where ``transformers`` can load it from ``model`` (a local folder or a cached
    hub name); otherwise it starts the engine and takes the engine's. ``loaded``: an engine the caller
    started and closes itself, used instead of starting one."""

    def __init__(
        self, engine: str, model: str, options: EngineOptions | None, loaded: Backend | None = None
    ) -> None:
        self.engine = engine
        self.model = model
        self.options = options
        self.backend: Backend | None = loaded
        self.owned = loaded is None

    def get(self) -> Backend:
        if self.backend is None:
            from s1kit.backends import EngineOptions, load_backend

            self.backend = load_backend(self.engine, self.model, self.options or EngineOptions())
        return self.backend

    def tokenizer(self) -> Any:
        if self.backend is None and self.engine != "openai":
            from transformers import AutoTokenizer

            try:
                return AutoTokenizer.from_pretrained(self.model)
            except (OSError, ValueError):
                pass  # not loadable on its own: the engine's tokenizer
        return self.get().tokenizer

    def __enter__(self) -> EngineOnDemand:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.backend is not None and self.owned:
            self.backend.close()
            self.backend = None


@dataclass
class GenerationStats:
    generated: int = 0
    cached: int = 0

    def describe(self) -> str:
        return f"generated {self.generated}, from cache {self.cached}"


def generate_cached(
    load: Callable[[], Backend],
    maker: PromptMaker,
    jobs: Sequence[Job],
    cache: GenerationCache,
    *,
    desc: str,
    progress: bool,
    kill_point: str = "",
) -> GenerationStats:
    """Generate every job whose key the cache lacks, in batches of the backend's ``max_batch``; each
    batch is appended to the cache as it finishes. Afterwards ``cache`` holds every job's generation.
    ``load`` starts the engine, called only when something is missing (once; the caller closes it)."""
    from tqdm.auto import tqdm

    stats = GenerationStats()
    todo: dict[str, Job] = {}
    for j in jobs:
        if j.key in cache:
            stats.cached += 1
        elif j.key not in todo:
            todo[j.key] = j
    pending = list(todo.values())
    if not pending:
        return stats
    backend = load()
    max_len = backend.max_len
    vocab = getattr(backend, "vocab_size", None)
    batch = max(1, int(backend.max_batch))
    bar = tqdm(total=len(pending), desc=desc, unit="gen", disable=not progress)
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        too_long = [j for j in chunk if max_len is not None and len(j.prompt_ids) >= max_len]
        fitting = [j for j in chunk if j not in too_long]
        results = backend.generate([maker.request(j, vocab) for j in fitting]) if fitting else []
        records = [_record(maker.model, j, r) for j, r in zip(fitting, results, strict=True)]
        records += [
            {
                "key": j.key,
                "model": maker.model,
                "index": j.index,
                "text": "",
                "finish_reason": PROMPT_TOO_LONG,
            }
            for j in too_long
        ]
        cache.append(records, kill_point)
        stats.generated += len(chunk)
        bar.update(len(chunk))
    bar.close()
    return stats


def _record(model: str, job: Job, result: Any) -> dict[str, Any]:
    return {
        "key": job.key,
        "model": model,
        "index": job.index,
        "prompt_tokens": len(job.prompt_ids),
        "text": result.text,
        "finish_reason": result.finish_reason,
        "thinking_tokens": int(result.thinking_tokens),
        "answer_tokens": int(result.answer_tokens),
        "forced_tokens": int(result.forced_tokens),
        "extensions_used": int(result.extensions_used),
        "generated_tokens": len(result.token_ids),
    }
