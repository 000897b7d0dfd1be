"""Per-request budget arguments for serving stacks: a :class:`BudgetSpec` as a JSON-safe dict.

Serving stacks pass per-request arguments as JSON-safe values (vLLM ``SamplingParams.extra_args`` /
the OpenAI server's ``vllm_xargs``; SGLang ``custom_params``). A spec travels as
``{KEY: spec_to_params(spec)}``, or as its JSON text where only flat values are allowed (vLLM's
``vllm_xargs``). Token ids are the model's: build the spec with the same tokenizer as the server.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from s1kit.budget.spec import BudgetSpec

# The per-request argument that carries a spec, in every serving adapter.
KEY = "s1kit_budget"

_FIELDS = (
    "vocab_size",
    "think_end",
    "think_start",
    "eos",
    "answer_prefix",
    "extensions",
    "max_thinking_tokens",
    "min_thinking_tokens",
    "num_extensions",
    "grace_tokens",
    "newline_tokens",
    "max_answer_tokens",
    "answer_stop",
)


def spec_to_params(spec: BudgetSpec) -> dict[str, Any]:
    """``spec`` as a JSON-safe dict (lists of ints, ints, None)."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, tuple) else v

    return {name: plain(getattr(spec, name)) for name in _FIELDS}


def spec_to_json(spec: BudgetSpec) -> str:
    """``spec`` as compact JSON text (for string-only argument channels such as ``vllm_xargs``)."""
    return json.dumps(spec_to_params(spec), separators=(",", ":"), sort_keys=True)


def spec_from_params(value: Any) -> BudgetSpec:
    """A spec from :func:`spec_to_params`'s dict or :func:`spec_to_json`'s text (cached per content).

    Raises ``ValueError`` naming the problem for anything else, so stacks reject the request.
    """
    if isinstance(value, BudgetSpec):
        return value
    if isinstance(value, Mapping):
        text = json.dumps(dict(value), separators=(",", ":"), sort_keys=True)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(
            f"{KEY} must be a dict from s1kit.budget.adapters.params.spec_to_params or its JSON text, "
            f"got {type(value).__name__}"
        )
    return _parse(text)


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> BudgetSpec:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{KEY} is not valid JSON ({e}): pass spec_to_json(spec)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{KEY} must be a JSON object of spec fields, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{KEY} has unknown fields {unknown}: the fields are {list(_FIELDS)}")
    for name in ("vocab_size", "think_end"):
        if name not in raw:
            raise ValueError(f"{KEY} lacks {name!r}: build it with spec_to_params(BudgetSpec(...))")
    try:
        return BudgetSpec(**raw)
    except TypeError as e:
        raise ValueError(f"{KEY} holds a value of the wrong type: {e}") from None
