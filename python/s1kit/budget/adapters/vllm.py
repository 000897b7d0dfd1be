"""Budget forcing inside vLLM: a batch-level logits processor for vLLM's V1 interface.

Load it when starting the engine (the V1 interface runs on vLLM's V1 model runner; vLLM >= 0.32
defaults to Model Runner V2, so select V1 with the environment variable)::

    VLLM_USE_V2_MODEL_RUNNER=0 vllm serve MODEL \\
        --logits-processors s1kit.budget.adapters.vllm:BudgetForcingLogitsProcessor

    # offline
    LLM(model, logits_processors=[BudgetForcingLogitsProcessor])

Each request opts in with its spec as a per-request argument (others are left untouched)::

    from s1kit.budget.adapters.params import KEY, spec_to_json, spec_to_params
    SamplingParams(..., extra_args={KEY: spec_to_params(spec)})      # offline
    {"vllm_xargs": {"s1kit_budget": spec_to_json(spec)}}             # OpenAI-compatible server

State: one core :class:`BudgetBatch` whose slots are vLLM's persistent-batch indices. vLLM's
``BatchUpdate`` is applied in its documented order (removed, added, moved; a move is a swap or a
one-way move that empties its source), then every row is advanced over the tokens its running
output list gained since the last step (vLLM passes a live reference to that list when the request
is added, so a preempted and re-added request is replayed from its first output token). ``apply``
runs the core's mask mode (see :mod:`s1kit.budget.adapters.masking`): a forced token gets all the
probability; the tokens that would end thinking are banned and their probability moves onto "Wait"
(or the answer prefix), pooled by max for greedy requests (``temperature == 0``) and by logsumexp at
the request's temperature otherwise; the flag that says whether an emitted replacement stands for an
end attempt reaches the core with the emitted token.
vLLM applies custom processors after its built-in ones (penalties, bias, min-tokens), and
structured-output bitmasks afterwards: keep grammars off for budget-forced requests, or make sure
the grammar allows the forced texts (budget forcing must apply last; see docs/embedding.md).

Shapes: ``B`` requests in the step, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from s1kit.budget.adapters.masking import MaskBuffers, RedirectFlags, apply_mask
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.budget.batch import BudgetBatch

try:  # The adapter runs (and is tested) without vLLM; inside vLLM it is a real subclass.
    from vllm.v1.sample.logits_processor import LogitsProcessor as _VllmLogitsProcessor
except ImportError:  # pragma: no cover - depends on the environment
    _VllmLogitsProcessor = object

__all__ = ["KEY", "BudgetForcingLogitsProcessor"]


def _budget_arg(params: Any) -> Any:
    extra = getattr(params, "extra_args", None) or {}
    return extra.get(KEY)


class BudgetForcingLogitsProcessor(_VllmLogitsProcessor):
    """vLLM V1 logits processor: per-request budget forcing (``extra_args["s1kit_budget"]``)."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Reject a request whose budget argument is not a valid spec (vLLM calls this on admission)."""
        value = _budget_arg(sampling_params)
        if value is not None:
            spec_from_params(value)

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        capacity = int(vllm_config.scheduler_config.max_num_seqs)
        self._batch = BudgetBatch(capacity, max_rollback=0)
        # Per persistent-batch index: the request's live output list and how much of it was fed.
        self._outputs: dict[int, list[int]] = {}
        self._fed: dict[int, int] = {}
        self._slots = np.empty(0, np.int64)
        self._buffers = MaskBuffers(capacity, 1)
        self._tokens = np.empty(capacity, np.int64)
        self._taken = RedirectFlags()  # per slot: did the last mask take its redirect
        self._temperature: dict[int, float] = {}  # per slot: the request's temperature (0: greedy)
        self._generator = torch.Generator(device=device)
        self._generator.manual_seed(0)
        # Per request (keyed by its output list, which survives preemption): the redirect flag of
        # each token fed, so that a re-added request is replayed with the same attributions.
        # The entry holds the list itself, so that its id cannot be reused by a new request's list.
        self._flags: dict[int, tuple[list[int], list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        """Forcing changes the argmax, so greedy requests must run it too."""
        return False

    def update_state(self, batch_update: Any | None) -> None:
        """Apply vLLM's batch changes, then feed each row the tokens it emitted since the last step."""
        if batch_update is not None:
            self._apply_batch_update(batch_update)
        self._feed_new_tokens()

    def _apply_batch_update(self, update: Any) -> None:
        b = self._batch
        for index in update.removed:
            self._drop(index)
        for index, params, prompt_ids, output_ids in update.added:
            value = _budget_arg(params)
            if value is None:  # this request does not use budget forcing
                self._drop(index)
                continue
            if b.row_state(index) is not None:  # an added request replaces the one at its index
                b.remove(index)
            b.insert(index, spec_from_params(value))
            b.process_prompt(index, prompt_ids or ())
            self._outputs[index] = output_ids
            self._temperature[index] = float(getattr(params, "temperature", 0.0) or 0.0)
            self._fed[index] = 0
            self._flags.setdefault(id(output_ids), (output_ids, []))
            if len(self._flags) > 4 * self._batch.capacity:  # forget the oldest requests not running
                live = {id(o) for o in self._outputs.values()}
                stale = [k for k in self._flags if k not in live]
                for k in stale[: len(self._flags) - 2 * self._batch.capacity]:
                    del self._flags[k]
        for a, c, direction in update.moved:
            if _is_swap(direction):
                b.swap(a, c)
                self._taken.swap(a, c)
                _swap_keys(self._outputs, a, c)
                _swap_keys(self._fed, a, c)
                _swap_keys(self._temperature, a, c)
            else:  # one-way move a -> c: c is replaced, a is left empty
                b.move_row(a, c)
                self._taken.move(a, c)
                _move_key(self._outputs, a, c)
                _move_key(self._fed, a, c)
                _move_key(self._temperature, a, c)
        self._slots = np.fromiter(sorted(self._outputs), np.int64, len(self._outputs))

    def _drop(self, index: int) -> None:
        if index < self._batch.capacity and self._batch.row_state(index) is not None:
            self._batch.remove(index)
        self._outputs.pop(index, None)
        self._fed.pop(index, None)
        self._temperature.pop(index, None)
        self._taken.drop(index)

    def _feed_new_tokens(self) -> None:
        """Advance rows over new output tokens: one core call per token position (usually one)."""
        pending = [(i, self._outputs[i], self._fed[i]) for i in self._slots.tolist()]
        pending = [(i, out, fed) for i, out, fed in pending if len(out) > fed]
        while pending:
            slots = np.fromiter((i for i, _, _ in pending), np.int64, len(pending))
            tokens = self._tokens[: len(pending)]
            for k, (_, out, fed) in enumerate(pending):
                tokens[k] = out[fed]
            taken = self._taken.take(slots.tolist())
            for k, (_, out, fed) in enumerate(pending):
                history = self._flags.setdefault(id(out), (out, []))[1]
                if fed < len(history):  # a replay after re-adding: the recorded attribution
                    taken[k] = history[fed]
                else:
                    history.append(int(taken[k]))
            self._batch.advance(tokens, slots, taken)
            nxt = []
            for i, out, fed in pending:
                self._fed[i] = fed + 1
                if len(out) > fed + 1:
                    nxt.append((i, out, fed + 1))
            pending = nxt

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Edit the rows of budget-forced requests in place (row ``i`` is persistent index ``i``)."""
        if len(self._slots) == 0:
            return logits
        slots = self._slots[self._slots < logits.shape[0]]
        force, redirect, ban = self._buffers.run(self._batch, slots)
        temp = np.fromiter((self._temperature.get(i, 0.0) for i in slots.tolist()), np.float64, len(slots))
        taken = apply_mask(
            logits,
            slots,
            force,
            redirect,
            ban,
            sample_N=temp > 1e-5,
            temperature_N=temp,
            generator=self._generator,
        )
        self._taken.record(slots, taken)
        return logits

    # --- introspection (tests, metrics) -------------------------------------------------------
    def row_state(self, index: int) -> dict[str, int | bool] | None:
        """The core's state of the request at persistent index ``index`` (None when not forced)."""
        return self._batch.row_state(index) if index in self._outputs else None

    @property
    def governed(self) -> Sequence[int]:
        """Persistent indices of the requests this processor governs."""
        return self._slots.tolist()


def _is_swap(direction: Any) -> bool:
    return str(getattr(direction, "name", direction)).upper().endswith("SWAP")


def _swap_keys(d: dict[int, Any], a: int, b: int) -> None:
    va, vb = d.pop(a, None), d.pop(b, None)
    if va is not None:
        d[b] = va
    if vb is not None:
        d[a] = vb


def _move_key(d: dict[int, Any], a: int, b: int) -> None:
    va = d.pop(a, None)
    d.pop(b, None)
    if va is not None:
        d[b] = va
