"""The engine flags of ``s1kit curate --attempts`` and ``s1kit distill``: the same names as
``s1kit eval``'s ``--engine`` options (``--engine --device --dtype --max-batch --max-len
--tensor-parallel-size --max-model-len --gpu-memory-utilization --engine-args``), turned into
:class:`s1kit.backends.EngineOptions`. Imports nothing heavy (parsers are built for ``--help``)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from s1kit.backends.base import ENGINES

if TYPE_CHECKING:
    from s1kit.backends import EngineOptions


def add_engine_arguments(g: argparse._ActionsContainer, *, max_len: int = 4096) -> None:
    g.add_argument("--engine", choices=ENGINES, default="s1kit", help="engine backend (default: s1kit)")
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    g.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto", help="weights dtype"
    )
    g.add_argument("--max-batch", type=int, default=16, help="requests per engine batch (default 16)")
    g.add_argument(
        "--max-len",
        type=int,
        default=max_len,
        help=f"prompt + generated tokens per request (default {max_len})",
    )
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm/sglang: GPUs per model")
    g.add_argument("--max-model-len", type=int, default=None, help="vllm/sglang (default: --max-len)")
    g.add_argument(
        "--gpu-memory-utilization", type=float, default=None, help="vllm/sglang: fraction of GPU memory"
    )
    g.add_argument(
        "--engine-args",
        default=None,
        metavar="JSON",
        help="more keyword arguments for the vllm/sglang engine",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions:
    from s1kit.backends import EngineOptions

    extra = {}
    if args.engine_args:
        try:
            extra = json.loads(args.engine_args)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"--engine-args {args.engine_args!r} is not JSON ({e}); e.g. '{{\"seed\": 0}}'"
            ) from e
        if not isinstance(extra, dict):
            raise ValueError(
                f"--engine-args {args.engine_args!r}: give a JSON object, e.g. '{{\"seed\": 0}}'"
            )
    return EngineOptions(
        device=args.device,
        dtype=args.dtype,
        max_batch=args.max_batch,
        max_len=args.max_len,
        tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        engine_args=extra,
    )
