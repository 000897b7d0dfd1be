"""The backend interface, its options and the registry that loads a backend by name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from s1kit.errors import S1kitError

if TYPE_CHECKING:
    from s1kit.generate.types import Request, Result

# name -> (module under s1kit.backends, the pip extra that installs the engine or None)
_REGISTRY: dict[str, tuple[str, str | None]] = {
    "s1kit": ("own", None),
    "hf": ("hf", None),
    "vllm": ("vllm", "vllm"),
    "sglang": ("sglang", "sglang"),
    "openai": ("openai", "openai"),
}
ENGINES: tuple[str, ...] = tuple(_REGISTRY)


class EngineNotInstalled(S1kitError):
    """The chosen engine's package is not installed; the message names the extra that installs it."""


@runtime_checkable
class Backend(Protocol):
    """What ``eval``, ``generate`` and curation need from an engine.

    ``tokenizer`` is a ``transformers`` tokenizer (chat template, decoding, stop strings). ``max_len``
    bounds prompt plus output tokens of one request (None: the engine has no fixed bound s1kit knows).
    ``max_batch`` is how many requests a caller should hand over per ``generate`` call to keep the
    engine busy (the engine may queue more).
    """

    name: str
    tokenizer: Any
    max_len: int | None
    max_batch: int

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Run every request to completion; one result per request, in request order."""
        ...

    def close(self) -> None:
        """Release the engine (GPU memory, worker processes, server connections); idempotent."""
        ...


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings, named as the engines' own users know them.

    ``device``, ``dtype`` ("auto", "float32", "bfloat16", "float16"), ``max_batch`` and ``max_len``
    apply to every backend that loads weights itself; ``tensor_parallel_size``,
    ``gpu_memory_utilization`` and ``max_model_len`` pass to vLLM / SGLang under their own names
    (``max_model_len`` defaults to ``max_len``). ``engine_args`` (``--engine-args JSON``) passes further
    keyword arguments to the engine's constructor unchanged; a key that is also set by a named option
    is refused. ``base_url`` / ``api_key`` are the OpenAI-compatible client's.
    """

    device: str | None = None
    dtype: str = "auto"
    max_batch: int = 16
    max_len: int = 4096
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {self.max_len}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.gpu_memory_utilization is not None and not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        object.__setattr__(self, "engine_args", dict(self.engine_args))


def load_backend(name: str, model: str, options: EngineOptions | None = None) -> Backend:
    """Load ``model`` (a model directory or hub name; the served model's name for ``openai``) on engine
    ``name`` (one of :data:`ENGINES`)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    module_name = _REGISTRY[name][0]
    module = importlib.import_module(f"s1kit.backends.{module_name}")
    backend: Backend = module.load(model, options or EngineOptions())
    return backend


def require(package: str, engine: str) -> Any:
    """Import ``package`` for engine ``engine`` or raise :class:`EngineNotInstalled` naming its extra."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        extra = _REGISTRY[engine][1]
        hint = f"pip install 's1kit[{extra}]'" if extra else f"pip install {package}"
        raise EngineNotInstalled(
            f"engine {engine!r} needs the {package!r} package, which is not installed ({exc}); "
            f"install it with {hint}, or choose another --engine ({', '.join(ENGINES)})"
        ) from exc
