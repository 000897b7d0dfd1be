"""Budget state that follows vLLM V1's persistent batch (``BatchUpdate``), without importing vLLM.

:mod:`s1kit.budget.adapters.vllm` wraps this in vLLM's ``LogitsProcessor`` class; keeping the
bookkeeping here lets it be tested where vLLM is not installed, and against vLLM's own
``InputBatch`` where it is (``make test-engines``).

One core :class:`BudgetBatch` whose slots are vLLM's persistent-batch indices. A ``BatchUpdate`` is
applied in vLLM's documented order (removed, added, moved; a move is a swap or a one-way move that
empties its source). Each added request brings a live reference to its running output list; rows
are fed from it lazily, in :meth:`PersistentBatchBudget.apply`, because vLLM fills it late:

- **Asynchronous scheduling** (on by default on GPUs): when ``update_state`` runs, the list ends with
  placeholder ids (-1) for tokens still on the device; vLLM replaces them
  (``InputBatch.update_async_output_token_ids``) just before the sampler calls ``apply``. A row is
  fed only up to its first placeholder, so a placeholder never reaches the core.
- **Tokens withdrawn** (the list got shorter than what was fed, e.g. tokens discarded after a
  KV-load failure) and **preemption** (the request is removed and later re-added with the outputs
  it already has): the row is rebuilt from its prompt and replayed from its first output token.

``apply`` then runs the core's mask mode (:mod:`s1kit.budget.adapters.masking`), and a row whose
request is finished as far as the budget goes (phase DONE: answer cap or answer stop reached) or
that is in its error phase is **stopped**: its only allowed token is the spec's first EOS id, so
vLLM's own EOS check ends the request.

Shapes: ``B`` logits rows (persistent-batch indices ``0..B-1``), ``N`` governed rows, ``V`` vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from s1kit.budget.adapters.masking import FORCED_LOGIT, MaskStep, RedirectFlags, sampled_temperatures
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.budget.batch import BudgetBatch, Phase
from s1kit.budget.spec import BudgetSpec

_log = logging.getLogger(__name__)
PLACEHOLDER = -1  # vLLM's async-scheduling stand-in for a token still on the device
# A forced token's logit (masking.FORCED_LOGIT, 1e9): every other finite logit then has probability
# exactly 0 in float32, also after vLLM's penalties and temperature (vLLM's own thinking budget
# forces the same way). Setting one cell instead of filling the row with -inf saves a pass over the
# vocabulary per forced row.
__all__ = ["FORCED_LOGIT", "PLACEHOLDER", "PersistentBatchBudget", "budget_arg", "check_request"]


def budget_arg(params: Any) -> Any:
    """The request's ``s1kit_budget`` argument (None: the request does not use budget forcing)."""
    extra = getattr(params, "extra_args", None) or {}
    return extra.get(KEY)


def check_request(params: Any) -> BudgetSpec | None:
    """The request's spec, or None; ``ValueError`` for a request this adapter cannot run exactly.

    Refused together with a budget: vLLM's own ``thinking_token_budget`` (both would force the end of
    thinking, with different counts), structured outputs (a grammar masks before this processor,
    so a forced "Wait" or answer prefix would break the grammar's own state), and a spec without an
    EOS id (a request whose budget is finished is stopped by forcing EOS).
    """
    value = budget_arg(params)
    if value is None:
        return None
    spec = spec_from_params(value)
    if getattr(params, "thinking_token_budget", None) is not None:
        raise ValueError(
            f"{KEY} and thinking_token_budget are both set: vLLM's thinking budget runs after "
            "custom processors and would override the forcing; drop thinking_token_budget (the spec's "
            "max_thinking_tokens is the cap)"
        )
    if getattr(params, "structured_outputs", None) is not None:
        raise ValueError(
            f"{KEY} with structured_outputs is not supported: vLLM applies the grammar bitmask before "
            "custom processors, so a forced 'Wait' or answer prefix would violate the grammar; "
            "send budget-forced requests without a grammar"
        )
    if not spec.eos:
        raise ValueError(
            f"{KEY}: the spec has no eos ids; the vLLM adapter stops a request whose budget is "
            "finished by forcing EOS, so build the spec with the model's EOS (BudgetSpec.from_tokenizer does)"
        )
    return spec


@dataclass
class _Request:
    spec: BudgetSpec
    prompt: Sequence[int]
    outputs: list[int]  # vLLM's live running output list
    flags: list[int]  # the redirect flag of each output token fed (kept across preemption)
    temperature: float  # 0: greedy
    fed: int = 0  # leading output tokens already fed to the core
    warned: bool = False  # its error phase was logged


class PersistentBatchBudget:
    """Budget rows keyed by vLLM V1 persistent-batch index (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        self._batch = BudgetBatch(capacity, max_rollback=0)
        self._req: dict[int, _Request] = {}
        self._slots = np.empty(0, np.int64)
        self._slot_temperature: np.ndarray | None = None
        self._rows: list[tuple[int, _Request]] = []  # (index, request) per governed index, sorted
        self._step = MaskStep(capacity, forced_logit=FORCED_LOGIT)
        self._tokens = np.empty(capacity, np.int64)
        self._temperature = np.zeros(capacity, np.float64)  # per index (0: greedy)
        self._taken = RedirectFlags()  # per index: did the last mask take its redirect
        # Per request (keyed by its output list, which survives preemption): the redirect flag of
        # each token fed, so that a re-added request is replayed with the same attributions. The
        # entry holds the list itself, so that its id cannot be reused by a new request's list.
        self._history: dict[int, tuple[list[int], list[int]]] = {}

    @property
    def capacity(self) -> int:
        return self._batch.capacity

    # --- batch changes ------------------------------------------------------------------------
    def update(self, update: Any | None) -> None:
        """Apply one ``BatchUpdate`` (None: no change)."""
        if update is None:
            return
        for index in update.removed:
            self._drop(index)
        for index, params, prompt_ids, output_ids in update.added:
            spec = check_request(params)
            if spec is None:  # this request does not use budget forcing
                self._drop(index)
                continue
            flags = self._history.setdefault(id(output_ids), (output_ids, []))[1]
            temperature = float(getattr(params, "temperature", 0.0) or 0.0)
            self._req[index] = _Request(spec, list(prompt_ids or ()), output_ids, flags, temperature)
            self._rebuild(index)
            self._forget_history()
        for a, c, direction in update.moved:
            if _is_swap(direction):
                self._batch.swap(a, c)
                self._taken.swap(a, c)
                _swap_keys(self._req, a, c)
                self._temperature[[a, c]] = self._temperature[[c, a]]
            else:  # one-way move a -> c: c is replaced, a is left empty
                self._batch.move_row(a, c)
                self._taken.move(a, c)
                _move_key(self._req, a, c)
                self._temperature[c], self._temperature[a] = self._temperature[a], 0.0
        self._slots = np.fromiter(sorted(self._req), np.int64, len(self._req))
        self._rows = [(i, self._req[i]) for i in self._slots.tolist()]
        self._slot_temperature = sampled_temperatures(self._temperature[self._slots])  # None: all greedy

    def _rebuild(self, index: int) -> None:
        req = self._req[index]
        if self._batch.row_state(index) is not None:  # an added request replaces the one at its index
            self._batch.remove(index)
        self._batch.insert(index, req.spec)
        self._batch.process_prompt(index, req.prompt)
        self._taken.drop(index)
        req.fed = 0
        self._temperature[index] = req.temperature

    def _drop(self, index: int) -> None:
        if index < self._batch.capacity:
            if self._batch.row_state(index) is not None:
                self._batch.remove(index)
            self._taken.drop(index)
        self._req.pop(index, None)

    def _forget_history(self) -> None:
        """Bound the flag histories: forget the oldest requests that are not running."""
        if len(self._history) <= 4 * self.capacity:
            return
        live = {id(r.outputs) for r in self._req.values()}
        stale = [k for k in self._history if k not in live]
        for k in stale[: len(self._history) - 2 * self.capacity]:
            del self._history[k]

    # --- per step -----------------------------------------------------------------------------
    def feed(self) -> None:
        """Advance rows over their new output tokens, up to the first placeholder (one core call
        per token position, usually one)."""
        pending = []
        for i, req in self._rows:
            n = len(req.outputs)
            if n < req.fed:  # tokens were withdrawn: replay from the prompt
                del req.flags[n:]
                self._rebuild(i)
            if n > req.fed and req.outputs[req.fed] != PLACEHOLDER:
                pending.append((i, req))
        while pending:
            m = len(pending)
            slots = self._slots if m == len(self._rows) else np.fromiter((i for i, _ in pending), np.int64, m)
            tokens = self._tokens[:m]
            taken = self._taken.take(slots)  # None: every flag is 0
            for k, (_, req) in enumerate(pending):
                tokens[k] = req.outputs[req.fed]
                if req.fed < len(req.flags):  # a replay: the recorded attribution
                    if taken is None:
                        taken = np.zeros(m, np.uint8)
                    taken[k] = req.flags[req.fed]
                else:
                    req.flags.append(0 if taken is None else int(taken[k]))
            self._batch.advance(tokens, slots, taken)
            nxt = []
            for i, req in pending:
                req.fed += 1
                if len(req.outputs) > req.fed and req.outputs[req.fed] != PLACEHOLDER:
                    nxt.append((i, req))
            pending = nxt

    def apply(self, logits_BV: torch.Tensor) -> torch.Tensor:
        """Feed, then edit the governed rows of ``logits_BV`` in place (row ``i`` is index ``i``)."""
        if not self._rows:
            return logits_BV
        self.feed()
        if self._rows[-1][0] < logits_BV.shape[0]:
            slots, temp = self._slots, self._slot_temperature
        else:
            slots = self._slots[self._slots < len(logits_BV)]
            temp = sampled_temperatures(self._temperature[slots])
        step = self._step.run(self._batch, logits_BV, slots, slots, temp)
        if step.errors:
            self._warn_errors(slots[self._batch.accounting().phase[slots] == Phase.ERROR])
        if step.flags_N is not None:  # else no end attempt was redirected: take() reads 0
            self._taken.record(slots, step.flags_N)
        return logits_BV

    def _warn_errors(self, slots: np.ndarray) -> None:
        for i in slots.tolist():
            req = self._req[i]
            if not req.warned:
                req.warned = True
                state = self._batch.row_state(i) or {}
                _log.warning(
                    "s1kit budget: request at batch index %d is in the error phase (error code %s, "
                    "see s1kit.budget.RowError) after %d output tokens; stopping it with EOS",
                    i,
                    state.get("error"),
                    req.fed,
                )

    # --- introspection (tests, metrics) -------------------------------------------------------
    def row_state(self, index: int) -> dict[str, int | bool] | None:
        """The core's state of the request at index ``index`` after its output so far (None when
        not forced)."""
        if index not in self._req:
            return None
        self.feed()
        return self._batch.row_state(index)

    @property
    def governed(self) -> list[int]:
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
