"""Budget forcing inside vLLM: a logits processor for vLLM's V1 model runner (vLLM 0.32 and 0.33).

Supported: vLLM ``>=0.32,<0.34`` (:data:`SUPPORTED`), on the V1 model runner. Importing this module
with any other vLLM (or none) raises ``ImportError`` naming that range. vLLM 0.34 removed the V1
runner; on vLLM 0.33 with CUDA the default is Model Runner V2, so select V1::

    VLLM_USE_V2_MODEL_RUNNER=0 vllm serve MODEL \\
        --logits-processors s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor

    # offline
    LLM(model, logits_processors=[BudgetForcingLogitsProcessor])

(vLLM's CPU build always runs the V1 runner.) Loaded into Model Runner V2, the processor refuses to
start with that instruction instead of running unforced. For Model Runner V2 (vLLM 0.33's default
on CUDA, vLLM 0.34) use :mod:`s1kit.budget.adapters.vllm_v2`.

Each request opts in with its spec as a per-request argument (others are left untouched)::

    from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
    SamplingParams(..., extra_args={KEY: spec_to_params(spec)})      # offline
    {"vllm_xargs": {"s1kit_budget": spec_to_json(spec)}}             # OpenAI-compatible server

Order in vLLM's V1 sampler: grammar bitmask, allowed-token ids, bad words, the built-in processors
that can change the argmax (min_tokens, logit_bias), **this processor**, penalties, vLLM's
``thinking_token_budget``, temperature, min_p, top-k/top-p. Penalties after it cannot undo a forced token or a ban (``-inf`` stays
``-inf``). A request that sets ``thinking_token_budget`` or ``structured_outputs`` together with a
budget is refused on admission (see :func:`~s1kit.budget.adapters.vllm_batch.check_request`);
min_tokens bans EOS before this processor runs, and a token this processor forces wins over it.
Speculative decoding is refused when the engine starts (vLLM's V1 runner refuses custom processors
with it too). Bookkeeping (asynchronous scheduling, preemption, stopping finished requests):
:mod:`s1kit.budget.adapters.vllm_batch`. The edit itself is the core's mask mode
(:mod:`s1kit.budget.adapters.masking`): a forced token gets all the probability (its logit is set to
``1e9``, as vLLM's own thinking budget forces: every other finite logit then has probability exactly
0, also after penalties and temperature); the tokens that would
end thinking are banned and their probability moves onto "Wait" (or the answer prefix), pooled by max
for greedy requests (``temperature == 0``) and by logsumexp at the request's temperature otherwise;
the flag that says whether an emitted replacement stands for an end attempt reaches the core with the
emitted token.

Shapes: ``B`` requests in the step, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from s1kit.budget.adapters.params import KEY
from s1kit.budget.adapters.vllm_batch import PersistentBatchBudget, check_request
from s1kit.budget.adapters.vllm_release import require_release

SUPPORTED = ">=0.32,<0.34"
_LOW, _HIGH = (0, 32), (0, 34)


VLLM_VERSION = require_release(
    "vllm",
    _LOW,
    _HIGH,
    "V1 model runner; vLLM 0.34 removed it and its logits-processor interface",
    "For vLLM 0.34 use s1kit.budget.adapters.vllm_v2 (Model Runner V2); otherwise install a supported "
    "vLLM, e.g. pip install 'vllm>=0.32,<0.34'",
)
from vllm.v1.sample.logits_processor import LogitsProcessor as _V1LogitsProcessor  # noqa: E402

try:  # vLLM 0.33 also ships Model Runner V2's interface: load there, then refuse clearly.
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as _V2LogitsProcessor
except ImportError:  # vLLM 0.32's CPU build
    _bases: tuple[type, ...] = (_V1LogitsProcessor,)
else:
    _bases = (_V1LogitsProcessor, _V2LogitsProcessor)

__all__ = ["KEY", "SUPPORTED", "VLLM_VERSION", "BudgetForcingLogitsProcessor"]

V2_REFUSED = (
    "s1kit.budget.adapters.vllm runs on vLLM's V1 model runner only, and this engine uses Model Runner "
    "V2: start vLLM with VLLM_USE_V2_MODEL_RUNNER=0, or load "
    "s1kit.budget.adapters.vllm_v2:BudgetForcingLogitsProcessor instead (vLLM {}; supported {})"
)


class BudgetForcingLogitsProcessor(*_bases):  # type: ignore[misc]
    """vLLM V1 logits processor: per-request budget forcing (``extra_args["s1kit_budget"]``)."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Refuse a request whose budget argument is invalid or cannot run exactly (on admission)."""
        check_request(sampling_params)

    def __init__(self, vllm_config: Any, device: Any = None, is_pin_memory: bool = False) -> None:
        if not isinstance(device, torch.device | str):  # Model Runner V2 passes its request states
            raise RuntimeError(V2_REFUSED.format(VLLM_VERSION, SUPPORTED))
        if getattr(vllm_config, "speculative_config", None) is not None:
            raise ValueError(
                "s1kit's vLLM adapter does not support speculative decoding (vLLM's V1 runner gives "
                "custom processors no per-draft rows): start vLLM without a speculative config"
            )
        self.budget = PersistentBatchBudget(int(vllm_config.scheduler_config.max_num_seqs))

    def is_argmax_invariant(self) -> bool:
        """Forcing changes the argmax, so greedy requests must run it too."""
        return False

    def update_state(self, batch_update: Any | None) -> None:
        """Apply vLLM's batch changes (rows are fed their new tokens in :meth:`apply`)."""
        self.budget.update(batch_update)

    def apply(self, logits: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        """Edit the rows of budget-forced requests in place (row ``i`` is persistent index ``i``)."""
        return self.budget.apply(logits)

    # --- introspection (tests, metrics) -------------------------------------------------------
    def row_state(self, index: int) -> dict[str, int | bool] | None:
        """The core's state of the request at persistent index ``index`` (None when not forced)."""
        return self.budget.row_state(index)

    @property
    def governed(self) -> Sequence[int]:
        """Persistent indices of the requests this processor governs."""
        return self.budget.governed
