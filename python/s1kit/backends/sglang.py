"""``--engine sglang``: SGLang's offline engine with s1kit's budget forcing as its custom logit processor.

The engine is ``sglang.Engine(model_path=MODEL, tp_size=..., dtype=..., context_length=max_model_len,
mem_fraction_static=gpu_memory_utilization, enable_custom_logit_processor=True, **engine_args)``
(:func:`engine_kwargs`; named options left unset are SGLang's defaults, and an ``--engine-args`` key
that one of them sets is refused). Unless ``--engine-args`` disables SGLang's overlap scheduler,
``SGLANG_ENABLE_DELAY_SAMPLE=1`` is set in the environment (if unset) before the engine starts: the
budget processor needs each request's previous token before it masks the next (see
:mod:`s1kit.budget.adapters.sglang`, "Overlap scheduling"). A batch of requests is **one** ``Engine.generate`` call
(:func:`generate_kwargs`): ``input_ids`` per request, SGLang sampling params per request
(:func:`sampling_params`: ``max_new_tokens`` bounded by ``max_len`` minus the prompt, temperature,
``top_p``, ``top_k`` (0 sent as -1), ``sampling_seed``, ``stop``, ``stop_token_ids`` plus the spec's EOS
ids the model does not stop on) and, for requests with a budget, the processor
(:class:`~s1kit.budget.adapters.sglang.BudgetForcingLogitProcessor`) with the spec in
``custom_params["s1kit_budget"]``, as docs/embedding.md documents. Budget forcing runs inside SGLang's
decode loop: no re-prompting.

**Accounting is recomputed on this side** (:func:`replay`): the returned output ids go through a
fresh core row in mask mode together with the processor's redirect flags, which SGLang returns in
``meta_info["s1kit_redirect"]`` (one per output token: whether an emitted redirect token stood for
the model's attempt to end thinking). The core is deterministic and has one semantics, so the
replayed row is exactly the row the processor drove: same thinking, answer and forced tokens,
extensions used, capped. Replaying the ids alone would not be exact: an emitted "Wait" can be the
model's own token or a replaced end attempt (issue 13, 6(b)), and only the flag tells them apart.
Where ``meta_info`` has no flags for a budgeted request (an SGLang release that does not return a
request's ``customized_info``; tested: 0.5.23), ``generate`` raises :class:`~s1kit.errors.S1kitError`
rather than guess: replaying without them miscounts extensions and forced tokens, and can put the
replayed row in its error phase where the processor's row was fine.

**Results are s1kit's engine's**: the processor ends a row whose budget is done (answer cap or answer
stop) or in error by forcing EOS; the replay cuts that EOS and reports the row as s1kit's engine does
("length" at the answer cap, "stop" at an answer stop, "error"). Other ends map from SGLang's
``finish_reason``: an EOS id of the model or the spec -> "eos", a stop id or stop string -> "stop",
``length`` -> "length", ``abort`` -> "error" (SGLang's message is logged). ``text`` is decoded here as
s1kit's engine decodes it (special tokens kept, final EOS dropped, cut before a stop string).

Sampling: greedy requests (temperature 0) are greedy in SGLang too; a seed becomes SGLang's
``sampling_seed`` (reproducible on SGLang, not the stream s1kit's engine draws for that seed).
Throughput fields are not measured per request here (0.0).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from s1kit.backends.base import EngineOptions, require
from s1kit.budget import BudgetBatch, BudgetSpec, Phase
from s1kit.budget.adapters.params import KEY, spec_to_params
from s1kit.errors import S1kitError
from s1kit.generate.types import Request, Result, SamplingParams

log = logging.getLogger(__name__)

REDIRECT_INFO = "s1kit_redirect"  # = s1kit.budget.adapters.sglang.REDIRECT_INFO (importing that needs torch)
_DTYPES = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def engine_kwargs(model: str, options: EngineOptions) -> dict[str, Any]:
    """The keyword arguments of ``sglang.Engine`` for ``model`` under ``options``."""
    named: dict[str, Any] = {
        "model_path": model,
        "tp_size": options.tensor_parallel_size,
        "dtype": _DTYPES[options.dtype],
        "context_length": options.max_model_len or options.max_len,
        "enable_custom_logit_processor": True,
    }
    if options.gpu_memory_utilization is not None:
        named["mem_fraction_static"] = options.gpu_memory_utilization
    clash = sorted(set(named) & set(options.engine_args))
    if clash:
        raise ValueError(
            f"--engine-args sets {clash}, which s1kit sets from its own options (model, "
            "--tensor-parallel-size, --dtype, --max-model-len, --gpu-memory-utilization; the custom "
            "logit processor is always enabled): use those options instead"
        )
    if options.engine_args.get("speculative_algorithm"):
        raise ValueError(
            "--engine-args speculative_algorithm: s1kit's budget processor refuses speculative decoding "
            "(SGLang repeats a request's row per draft token); leave it unset"
        )
    return {**named, **options.engine_args}


def sampling_params(
    sp: SamplingParams, spec: BudgetSpec | None, room: int, model_eos: frozenset[int]
) -> dict:
    """SGLang's sampling params (a dict) for one request; ``room``: ``max_len`` minus the prompt."""
    out: dict[str, Any] = {
        "max_new_tokens": min(sp.max_new_tokens, room),
        "temperature": sp.temperature,
        "top_p": sp.top_p,
        "top_k": sp.top_k if sp.top_k > 0 else -1,
        "skip_special_tokens": False,
        "no_stop_trim": True,
    }
    stop_ids = set(sp.stop_token_ids) | (set(spec.eos) - model_eos if spec is not None else set())
    if stop_ids:
        out["stop_token_ids"] = sorted(stop_ids)
    if sp.stop:
        out["stop"] = list(sp.stop)
    if sp.seed is not None:
        out["sampling_seed"] = sp.seed % (1 << 63)
    if spec is not None:
        out["custom_params"] = {KEY: spec_to_params(spec)}
    return out


def generate_kwargs(
    requests: Sequence[Request], processor_wire: str, max_len: int, model_eos: frozenset[int]
) -> dict[str, Any]:
    """The keyword arguments of one ``Engine.generate`` call for ``requests``."""
    prompts = [[int(t) for t in r.prompt_ids] for r in requests]
    return {
        "input_ids": prompts,
        "sampling_params": [
            sampling_params(r.sampling, r.budget, max_len - len(p), model_eos)
            for r, p in zip(requests, prompts, strict=True)
        ],
        "custom_logit_processor": [processor_wire if r.budget is not None else None for r in requests],
    }


def replay(
    spec: BudgetSpec, prompt: Sequence[int], tokens: Sequence[int], flags: Sequence[int | None] | None
) -> tuple[int, dict[str, Any], int]:
    """Feed ``tokens`` (with their redirect ``flags``; None: none known) through a fresh core row.

    Returns ``(n, accounting, phase)``: ``n`` tokens s1kit's engine would have emitted (the row ends
    at the token that makes it done or puts it in error; what follows is the processor's forced EOS),
    the row's counters after them and its phase.
    """
    batch = BudgetBatch(1, max_rollback=0)
    batch.insert(0, spec)
    batch.process_prompt(0, [int(t) for t in prompt])
    row = np.zeros(1, np.int64)
    n = 0
    for k, t in enumerate(tokens):
        f = flags[k] if flags is not None and k < len(flags) else None
        batch.advance(np.asarray([int(t)], np.int64), row, np.asarray([int(f or 0)], np.int64))
        n = k + 1
        if int(batch.accounting().phase[0]) in (Phase.DONE, Phase.ERROR):
            break
    acc = batch.accounting()
    counters = {
        "thinking_tokens": int(acc.thinking_tokens[0]),
        "answer_tokens": int(acc.answer_tokens[0]),
        "forced_tokens": int(acc.forced_tokens[0]),
        "extensions_used": int(acc.extensions_used[0]),
        "capped": bool(acc.capped[0]),
    }
    return n, counters, int(acc.phase[0])


def to_result(
    index: int, request: Request, output: Mapping[str, Any], model_eos: frozenset[int], tokenizer: Any
) -> Result:
    """One SGLang output (``output_ids``, ``meta_info``) as s1kit's :class:`Result`."""
    tokens = [int(t) for t in output["output_ids"]]
    meta = output.get("meta_info") or {}
    sp, spec = request.sampling, request.budget
    eos = model_eos | (frozenset(spec.eos) if spec is not None else frozenset())
    finish = _finish(meta.get("finish_reason"), eos, request)
    counters: dict[str, Any] = {}
    if spec is not None:
        flags = meta.get(REDIRECT_INFO)
        if flags is None or len(flags) < len(tokens):
            raise S1kitError(
                f"SGLang returned {'no' if flags is None else len(flags)} budget redirect flags "
                f"(meta_info[{REDIRECT_INFO!r}]) for request {request.request_id or index!r} with "
                f"{len(tokens)} output tokens: this SGLang release does not return the processor's "
                "per-request customized_info, so the budget accounting cannot be recovered exactly; "
                "use SGLang 0.5.23 (tested) or --engine vllm / s1kit"
            )
        n, counters, phase = replay(spec, request.prompt_ids, tokens, flags)
        if phase == Phase.ERROR:
            tokens, finish = tokens[:n], "error"
        elif phase == Phase.DONE:
            tokens, last = tokens[:n], tokens[n - 1]
            if last in eos:
                finish = "eos"
            elif last in sp.stop_token_ids:
                finish = "stop"
            else:
                cap = spec.max_answer_tokens
                finish = "length" if cap is not None and counters["answer_tokens"] >= cap else "stop"
    text = tokenizer.decode(tokens[:-1] if finish == "eos" else tokens, skip_special_tokens=False)
    if finish == "stop" and sp.stop:
        cuts = [i for i in (text.find(s) for s in sp.stop) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
    return Result(
        request_id=request.request_id or str(index),
        prompt_ids=[int(t) for t in request.prompt_ids],
        token_ids=tokens,
        text=text,
        finish_reason=finish,
        **counters,
    )


def _finish(reason: Any, eos: frozenset[int], request: Request) -> str:
    kind = reason.get("type") if isinstance(reason, Mapping) else reason
    if kind == "length":
        return "length"
    if kind == "stop":
        matched = reason.get("matched") if isinstance(reason, Mapping) else None
        return "eos" if isinstance(matched, int) and matched in eos else "stop"
    log.error(
        "SGLang ended request %r with %r; reported as finish_reason 'error'", request.request_id, reason
    )
    return "error"


class SGLangBackend:
    """A started ``sglang.Engine`` behind the backend interface (see the module documentation).

    ``processor_wire``: the ``custom_logit_processor`` string sent with budgeted requests (default:
    ``BudgetForcingLogitProcessor.to_str()``, SGLang's serialization of s1kit's processor).
    """

    name = "sglang"

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        *,
        eos_token_ids: Sequence[int],
        max_batch: int,
        max_len: int,
        processor_wire: str | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer: Any = tokenizer
        self.max_batch = max_batch
        self.max_len: int | None = max_len
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        if processor_wire is None:
            from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor

            processor_wire = BudgetForcingLogitProcessor.to_str()
        self._wire = processor_wire

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        assert self.max_len is not None
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeError(f"requests[{i}] must be an s1kit.generate.Request, got {type(r).__name__}")
            if not r.prompt_ids:
                raise ValueError(f"requests[{i}] has an empty prompt: give at least one token")
            if len(r.prompt_ids) >= self.max_len:
                raise ValueError(
                    f"requests[{i}]'s prompt has {len(r.prompt_ids)} tokens, which does not fit "
                    f"max_len={self.max_len} with room to generate: raise --max-len or shorten the prompt"
                )
        if not requests:
            return []
        outputs = self.engine.generate(
            **generate_kwargs(requests, self._wire, self.max_len, self.eos_token_ids)
        )
        if isinstance(outputs, Mapping):
            outputs = [outputs]
        return [
            to_result(i, r, o, self.eos_token_ids, self.tokenizer)
            for i, (r, o) in enumerate(zip(requests, outputs, strict=True))
        ]

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()


def load(model: str, options: EngineOptions) -> SGLangBackend:
    """Start ``sglang.Engine`` on ``model`` (raises :class:`EngineNotInstalled` without SGLang)."""
    sglang = require("sglang", "sglang")
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    kwargs = engine_kwargs(model, options)
    tokenizer = AutoTokenizer.from_pretrained(model)
    # As s1kit's engine: generation_config.json's EOS ids, else the config's and the tokenizer's.
    eos: list[int] = []
    with contextlib.suppress(OSError):  # no generation_config.json
        eos = _as_ids(GenerationConfig.from_pretrained(model).eos_token_id)
    if not eos:
        config = AutoConfig.from_pretrained(model)
        eos = sorted(set(_as_ids(config.eos_token_id) + _as_ids(getattr(tokenizer, "eos_token_id", None))))
    if not kwargs.get("disable_overlap_schedule"):
        # The budget processor needs each request's previous token before it masks the next: with the
        # overlap scheduler, SGLang must delay sampling until the previous step is processed.
        os.environ.setdefault("SGLANG_ENABLE_DELAY_SAMPLE", "1")
    engine = sglang.Engine(**kwargs)
    return SGLangBackend(
        engine,
        tokenizer,
        eos_token_ids=eos,
        max_batch=options.max_batch,
        max_len=min(options.max_len, int(kwargs["context_length"])),  # a request's prompt + output
    )


def _as_ids(x: Any) -> list[int]:
    if x is None:
        return []
    return [int(x)] if isinstance(x, int) else [int(t) for t in x]
