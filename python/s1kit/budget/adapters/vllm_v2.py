"""Budget forcing inside vLLM's Model Runner V2 (vLLM 0.34, and 0.33 when it runs Model Runner V2).

Supported: vLLM ``>=0.33,<0.35`` (:data:`SUPPORTED`). Importing this module with any other vLLM (or
none) raises ``ImportError`` naming that range. vLLM 0.34 has only Model Runner V2; vLLM 0.33 uses
it by default on CUDA (for its V1 runner, ``VLLM_USE_V2_MODEL_RUNNER=0``, use
:mod:`s1kit.budget.adapters.vllm`)::

    vllm serve MODEL --logits-processors s1kit.budget.adapters.vllm_v2:BudgetForcingLogitsProcessor

    # offline
    from s1kit.budget.adapters.vllm_v2 import BudgetForcingLogitsProcessor
    LLM(model, logits_processors=[BudgetForcingLogitsProcessor])

Each request opts in with its spec as a per-request argument (others are left untouched), as for
the V1 adapter::

    from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
    SamplingParams(..., extra_args={KEY: spec_to_params(spec)})      # offline
    {"vllm_xargs": {"s1kit_budget": spec_to_json(spec)}}             # OpenAI-compatible server

The per-row state stays on the device (:mod:`s1kit.budget.adapters.vllm_v2_device`): a decode step
reads nothing back to the host; only a step that admits requests synchronises once (the rows'
state and the admitted requests' tokens to the host, the device state reloaded). The decisions are override mode's (s1kit's own engine), applied
as logit edits before sampling: forced tokens, end attempts banned with their probability moved
onto "Wait" or the answer prefix, and a request whose row is DONE (answer cap or answer stop
reached) or in its error phase stopped by forcing the spec's first EOS id.

Order in Model Runner V2's sampler: grammar bitmask, logit_bias, penalties, bad words, **this
processor**, vLLM's ``thinking_token_budget``, temperature, min_p, top-k/top-p. Penalties run
before it here (after it on the V1 runner), so they cannot undo a forced token or a ban either. Refused on admission (see
:func:`~s1kit.budget.adapters.vllm_batch.check_request`): ``thinking_token_budget`` or structured
outputs together with a budget, and a spec without an EOS id. Refused when the engine starts:
speculative decoding (draft rows would need the budget stepped per draft token and rolled back on
rejection; the processor raises instead of miscounting) and watermarking (its sampler redraws
tokens after the processor).

Shapes: ``N`` logits rows, ``V`` vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch

from s1kit.budget.adapters.params import KEY
from s1kit.budget.adapters.vllm_batch import check_request
from s1kit.budget.adapters.vllm_release import require_release
from s1kit.budget.adapters.vllm_v2_device import SPECULATIVE_REFUSED, WATERMARK_REFUSED, RunnerV2Budget

SUPPORTED = ">=0.33,<0.35"
_LOW, _HIGH = (0, 33), (0, 35)


VLLM_VERSION = require_release(
    "vllm_v2",
    _LOW,
    _HIGH,
    "Model Runner V2's logits-processor interface",
    "For vLLM 0.32 use s1kit.budget.adapters.vllm (V1 runner); otherwise pip install 'vllm>=0.33,<0.35'",
)
from vllm.v1.worker.gpu.sample.logits_processor import (  # noqa: E402
    LogitsContext,
    LogitsProcessor,
    LogitsProcRequestState,
)

__all__ = [
    "KEY",
    "SPECULATIVE_REFUSED",
    "SUPPORTED",
    "VLLM_VERSION",
    "WATERMARK_REFUSED",
    "BudgetForcingLogitsProcessor",
]


class BudgetForcingLogitsProcessor(RunnerV2Budget, LogitsProcessor):
    """vLLM Model Runner V2 logits processor: per-request budget forcing (``extra_args["s1kit_budget"]``).

    The interface's methods come from :class:`~s1kit.budget.adapters.vllm_v2_device.RunnerV2Budget`.
    """

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Refuse a request whose budget argument is invalid or cannot run exactly (on admission)."""
        check_request(sampling_params)

    def __init__(self, vllm_config: Any, req_states: LogitsProcRequestState) -> None:
        RunnerV2Budget.__init__(self, vllm_config, req_states)

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        """Feed the rows of this step their committed tokens, then edit their logits in place."""
        return RunnerV2Budget.apply(self, logits, ctx)
