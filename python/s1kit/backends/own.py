"""``--engine s1kit``: s1kit's own decode engine (:class:`s1kit.generate.Engine`), the default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from s1kit.backends.base import EngineOptions

if TYPE_CHECKING:
    from s1kit.generate import Engine
    from s1kit.generate.types import Request, Result

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class OwnBackend:
    """Wraps a loaded :class:`~s1kit.generate.Engine`; budget forcing runs in its decode loop."""

    name = "s1kit"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tokenizer: Any = engine.tokenizer
        self.max_len: int | None = engine.max_len
        self.max_batch = engine.max_batch

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary size (embedding rows), which may exceed the tokenizer's."""
        return int(self.engine.model.args.vocab_size)

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return self.engine.generate(requests)

    def close(self) -> None:
        pass


def load(model: str, options: EngineOptions) -> OwnBackend:
    import torch

    from s1kit.generate import Engine

    if options.tensor_parallel_size != 1:
        raise ValueError(
            f"tensor_parallel_size={options.tensor_parallel_size}: s1kit's engine runs one device; "
            "use --engine vllm or --engine sglang for tensor parallelism"
        )
    if options.engine_args:
        raise ValueError(
            f"--engine-args {sorted(options.engine_args)} is for vllm/sglang; s1kit's engine takes "
            "--device, --dtype, --max-batch and --max-len"
        )
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = None if options.dtype == "auto" else getattr(torch, _DTYPES[options.dtype])
    engine = Engine.from_pretrained(
        model, device=device, dtype=dtype, max_batch=options.max_batch, max_len=options.max_len
    )
    return OwnBackend(engine)
