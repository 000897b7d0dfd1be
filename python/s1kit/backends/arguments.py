"""The engine flags of ``s1kit eval`` and ``s1kit generate``, and their mapping onto :class:`EngineOptions`.

One place for both commands, so that ``--engine``, the engine options and ``--forcing`` read the same
in each ``--help`` and mean the same. Flags are named as each engine's own users know them
(``--tensor-parallel-size``, ``--max-model-len``, ``--gpu-memory-utilization`` are vLLM's; SGLang's
``--tp-size``/``--context-length``/``--mem-fraction-static`` take the same values). Which backend
honours which option is :class:`EngineOptions`' documentation; a backend refuses an option it cannot
apply (e.g. ``--tensor-parallel-size 2`` on s1kit's engine) with an error naming the flag.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from s1kit.backends.base import ENGINES, EngineOptions
from s1kit.backends.forcing import FORCING_MODES

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--engine-args is not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"--engine-args must be a JSON object such as '{{\"enforce_eager\": true}}', got {text!r}"
        )
    return value


def add_engine_arguments(
    p: argparse.ArgumentParser,
    *,
    device_default: str | None,
    max_len_default: int | None,
    max_len_help: str,
    forcing: bool = True,
) -> None:
    """Add ``--engine``, the engine options and (``forcing=True``) ``--forcing`` to ``p`` (a group of
    its own).

    ``device_default`` / ``max_len_default`` are the command's own defaults (``eval`` and ``generate``
    kept theirs from before the engines were pluggable). ``curate --attempts`` and ``distill`` use the
    same flags without ``--forcing`` (they always force in the engine's loop).
    """
    g = p.add_argument_group(
        "engine (s1kit: s1kit's own engine, the default; hf: transformers; vllm, sglang: in-process "
        "engines; openai: a served model at --base-url)"
    )
    g.add_argument("--engine", choices=ENGINES, default="s1kit", help="the engine that generates")
    if forcing:
        _add_forcing(g)
    g.add_argument(
        "--device",
        default=device_default,
        help="cuda, cuda:N or cpu" + _default(device_default, "cuda when available"),
    )
    g.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights and activations (default: auto, the engine's own choice: bfloat16 on CUDA and "
        "float32 on CPU for s1kit, dtype='auto' for vllm/sglang)",
    )
    g.add_argument("--max-batch", type=int, default=16, help="requests decoded at once (default: 16)")
    g.add_argument("--max-len", type=int, default=max_len_default, help=max_len_help)
    g.add_argument(
        "--tensor-parallel-size", type=int, default=1, help="GPUs per model (vllm, sglang; default: 1)"
    )
    g.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="the engine's context length (vllm, sglang; default: --max-len)",
    )
    g.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        help="share of GPU memory the engine may take, in (0, 1] (vllm, sglang; default: the engine's)",
    )
    g.add_argument(
        "--engine-args",
        type=_json_object,
        default={},
        metavar="JSON",
        help="further keyword arguments for the engine's constructor (vllm, sglang), as a JSON object; a "
        "key also set by a flag above is refused",
    )
    g.add_argument(
        "--base-url", default=None, help="the OpenAI-compatible server (openai), e.g. http://host:8000/v1"
    )
    g.add_argument("--api-key", default=None, help="the server's API key (openai; default: none)")


def _add_forcing(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--forcing",
        choices=FORCING_MODES,
        default="inloop",
        help="budget forcing inside the engine's decode loop (inloop: one call per request, the prompt "
        "prefilled once) or s1's way (reprompt: one engine call per 'Wait', each re-prefilling the "
        "prompt and all text so far; recorded as prefill_tokens)",
    )


def _default(value: object, otherwise: str) -> str:
    return f" (default: {value})" if value is not None else f" (default: {otherwise})"


def engine_options(args: argparse.Namespace, *, max_len: int) -> EngineOptions:
    """The :class:`EngineOptions` the engine flags in ``args`` ask for; ``max_len`` is the resolved
    ``--max-len`` (a command may derive its default)."""
    return EngineOptions(
        device=args.device,
        dtype=args.dtype,
        max_batch=args.max_batch,
        max_len=max_len,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        engine_args=dict(args.engine_args),
        base_url=args.base_url,
        api_key=args.api_key,
    )


def options_record(options: EngineOptions) -> dict[str, Any]:
    """The options as stored in run.json: every field, the API key only as whether one was given."""
    record = asdict(options)
    record["engine_args"] = dict(options.engine_args)
    record["api_key"] = "set" if options.api_key else None
    return record
