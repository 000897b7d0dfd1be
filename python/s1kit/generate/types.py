"""The engine's request and result types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s1kit.budget import BudgetSpec

FINISH_REASONS = ("eos", "stop", "length", "error")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop.

    ``temperature == 0`` is greedy. ``top_k == 0`` and ``top_p == 1`` disable those filters. ``seed``
    makes sampling reproducible whatever else is in the batch (None: a fresh random seed).
    ``stop`` strings end the request and are cut from ``Result.text`` (not from ``token_ids``);
    ``stop_token_ids`` end it like EOS does. ``max_new_tokens`` counts forced tokens too.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    max_new_tokens: int = 1024
    stop: Sequence[str] = ()
    stop_token_ids: Sequence[int] = ()

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 disables it), got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str):
            raise TypeError("stop must be a sequence of strings, e.g. stop=('</answer>',), not a string")
        if any(not s for s in self.stop):
            raise ValueError("stop holds an empty string: every stop string needs at least one character")
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))


@dataclass(frozen=True)
class Request:
    """One prompt (already tokenized, chat template applied) and how to continue it."""

    prompt_ids: Sequence[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    budget: BudgetSpec | None = None
    request_id: str = ""


@dataclass
class Result:
    """What one request produced.

    ``token_ids`` are every emitted token (forced ones included; a final EOS included). ``text`` decodes
    them with special tokens kept, without a final EOS and cut before a matched stop string.
    ``finish_reason``: "eos" (an EOS id), "stop" (a stop string or stop id, or the budget's answer
    stop), "length" (``max_new_tokens``, the cache length or the budget's answer cap) or "error" (the
    budget core put the row in its error phase, e.g. a token outside the spec's vocabulary). Budget
    fields are zero for requests without a budget. ``prefill_tokens_per_s`` is the throughput of the
    prefill call this request was part of; ``decode_tokens_per_s`` is this request's tokens after the
    first over the wall time from its prefill to its last token.
    """

    request_id: str
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str
    thinking_tokens: int = 0
    answer_tokens: int = 0
    forced_tokens: int = 0
    extensions_used: int = 0
    capped: bool = False
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
