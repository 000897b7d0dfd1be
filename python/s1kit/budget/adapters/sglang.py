"""Budget forcing inside SGLang: a ``CustomLogitProcessor``.

Start the server with custom logit processors enabled, and send the processor and the spec with
each request (SGLang ships the processor class as a serialized string)::

    SGLANG_ENABLE_DELAY_SAMPLE=1 python -m sglang.launch_server --model-path MODEL --enable-custom-logit-processor

    from s1kit.budget.adapters.params import KEY, spec_to_params
    from s1kit.budget.adapters.sglang import BudgetForcingLogitProcessor
    requests.post(url + "/generate", json={
        "text": prompt,
        "custom_logit_processor": BudgetForcingLogitProcessor.to_str(),
        "sampling_params": {"custom_params": {KEY: spec_to_params(spec)}, ...},
    })

SGLang calls ``processor(logits, custom_param_list)`` with the logits rows of the requests that use
the processor and one params dict per row; it adds ``"__req__"``, a weak proxy to the request
(``rid``, ``origin_input_ids``, ``output_ids``). SGLang rebuilds processor instances whenever it
rebuilds a batch, so the per-request state lives in one process-wide :class:`BudgetBatch` keyed by
request id, not in the instance. Each call advances every row over the output tokens it gained
since the last call, frees the slots of requests that died (their weak proxy is dead), and applies
the core's mask mode (see :mod:`s1kit.budget`). Runs in the scheduler process (one per tensor-
parallel rank, each with its own identical state).

- A request whose row is finished as far as the budget goes (phase DONE: answer cap or answer stop
  reached) or in its error phase is **stopped**: its only allowed token is the spec's first EOS id
  (a spec without EOS ids is refused), so SGLang's own EOS check ends it.
- **Speculative decoding** is refused: SGLang calls custom processors with one row per draft token
  and the request's params repeated per row; a call in which one request has several rows raises
  ``ValueError`` (start SGLang without ``--speculative-algorithm`` to use budget forcing).
- **Retraction**: a retracted request keeps its output and is re-prefilled; with ``input_embeds``
  SGLang discards the output (``output_ids`` reset), and the row is rebuilt from its prompt and
  replayed, never left with stale state.
- **Watermarking** (``--enable-watermark``) replaces SGLang's sampler after the processors; the
  processor refuses to run under it (``RuntimeError``) rather than have its forced tokens resampled.
- **Redirect flags read back**: where SGLang's request has ``customized_info`` (0.5.23: SGLang
  returns it token-aligned in ``meta_info``), the processor keeps there, under
  :data:`REDIRECT_INFO`, one entry per output token: 1 where an emitted redirect token stands for
  the model's attempt to end thinking, else 0 (the entry of the token being sampled becomes an int
  when SGLang serializes the output, so no extra device sync). Replaying the output ids with these
  flags through the core (:mod:`s1kit.backends.sglang`) gives the row's exact accounting.
- **Overlap scheduling**: SGLang's overlap scheduler (on by default) samples a step before it
  appends the previous step's tokens to the requests, so the processor would see ``output_ids`` one
  token behind and force one token late. The processor refuses to run under it (``RuntimeError``,
  first call) unless ``SGLANG_ENABLE_DELAY_SAMPLE=1`` is set (sampling then waits for the previous
  step, as SGLang does for grammars; the overlap stays) or ``--disable-overlap-schedule`` is given.
- Order (SGLang 0.5.23): penalties, logit bias, min_new_tokens and the grammar mask (model runner),
  then custom processors (sampler), then temperature and top-k/p: budget forcing runs last, and a
  forced token wins over a grammar's mask, so send budget-forced requests without a grammar.

Shapes: ``B`` rows in the call, ``V`` vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from s1kit.budget.adapters.masking import MaskBuffers, RedirectFlags, apply_mask, generator_on
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.budget.batch import BudgetBatch, Phase

try:  # The adapter runs (and is tested) without SGLang; inside SGLang it is a real subclass.
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as _SglangProcessor
except ImportError:  # pragma: no cover - depends on the environment
    _SglangProcessor = object

__all__ = ["KEY", "REDIRECT_INFO", "BudgetForcingLogitProcessor", "BudgetRegistry"]

# The request's ``customized_info`` key holding the per-token redirect flags (see the module doc).
REDIRECT_INFO = "s1kit_redirect"
_NO_INFO = object()


class _PendingFlag:
    """The redirect flag of the token being sampled: still on the device when it is recorded; an
    int once read (``int()``) or pickled (SGLang pickles outputs after the step, when it is known)."""

    __slots__ = ("_flags_N", "_i")

    def __init__(self, flags_N: torch.Tensor, i: int) -> None:
        self._flags_N, self._i = flags_N, i

    def __int__(self) -> int:
        return int(self._flags_N[self._i])

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (int, (int(self),))


def _temperature(req: Any) -> float:
    """The request's sampling temperature (0: greedy), from SGLang's request object. SGLang stores
    a greedy request (temperature 0) as temperature 1 with ``top_k == 1``."""
    params = getattr(req, "sampling_params", None)
    if getattr(params, "top_k", None) == 1:
        return 0.0
    return float(getattr(params, "temperature", 0.0) or 0.0)


class BudgetRegistry:
    """Per-request budget state for one process: a growing :class:`BudgetBatch` keyed by request id."""

    def __init__(self, capacity: int = 64) -> None:
        self._batch = BudgetBatch(capacity, max_rollback=0)
        self._slot: dict[str, int] = {}  # rid -> slot
        self._req: dict[int, Any] = {}  # slot -> the request's weak proxy
        self._fed: dict[int, int] = {}  # slot -> output tokens fed to the core
        self._rid: dict[int, str] = {}  # slot -> rid
        self._specs: dict[int, Any] = {}  # slot -> spec (to rebuild the batch when it grows)
        self._flags: dict[int, list[int]] = {}  # slot -> the redirect flag of each fed token
        self._taken = RedirectFlags()  # per slot: did the last mask take its redirect
        self._generator: torch.Generator | None = None
        self._buffers = MaskBuffers(capacity, 1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slot)

    def _grow(self) -> None:
        old = self._batch
        new = BudgetBatch(old.capacity * 2, max_rollback=0)
        # Rebuild by replay: specs and tokens are known, so the new rows equal the old ones exactly.
        for slot, req in self._req.items():
            new.insert(slot, self._specs[slot])
            new.process_prompt(slot, list(req.origin_input_ids))
            out = list(req.output_ids)[: self._fed[slot]]
            for t, f in zip(out, self._flags[slot], strict=True):
                new.advance(
                    np.asarray([t], np.int64), np.asarray([slot], np.int64), np.asarray([f], np.uint8)
                )
        self._batch = new

    def _collect_dead(self) -> None:
        for slot, req in list(self._req.items()):
            try:
                req.rid  # noqa: B018 - a dead weak proxy raises here
            except ReferenceError:
                self._free(slot)

    def _free(self, slot: int) -> None:
        self._batch.remove(slot)
        del self._slot[self._rid.pop(slot)], self._req[slot], self._fed[slot], self._specs[slot]
        del self._flags[slot]
        self._taken.drop(slot)

    def slots_for(self, params_B: Sequence[dict[str, Any] | None]) -> np.ndarray:
        """Slot per row (-1: the row does not use budget forcing); admits new requests."""
        slots = np.full(len(params_B), -1, np.int64)
        seen: set[str] = set()
        for i, params in enumerate(params_B):
            if not params or params.get(KEY) is None:
                continue
            req = params.get("__req__")
            if req is None:
                raise ValueError(
                    "custom_params has no '__req__': this adapter needs SGLang's request reference "
                    "(SGLang adds it for requests sent with a custom_logit_processor)"
                )
            rid = str(req.rid)
            if rid in seen:
                raise ValueError(
                    f"request {rid} has several logits rows in one call: SGLang's speculative decoding "
                    "(one row per draft token) is not supported by s1kit budget forcing; start SGLang "
                    "without --speculative-algorithm"
                )
            seen.add(rid)
            slot = self._slot.get(rid)
            if slot is None:
                spec = spec_from_params(params[KEY])
                if not spec.eos:
                    raise ValueError(
                        f"{KEY}: the spec has no eos ids; the SGLang adapter stops a request whose budget "
                        "is finished by forcing EOS, so build the spec with the model's EOS"
                    )
                slot = self._admit(rid, req, spec)
            slots[i] = slot
        return slots

    def _free_slot(self) -> int | None:
        return next((s for s in range(self._batch.capacity) if s not in self._req), None)

    def _admit(self, rid: str, req: Any, spec: Any) -> int:
        slot = self._free_slot()
        if slot is None:
            self._collect_dead()
            slot = self._free_slot()
        if slot is None:
            self._grow()
            slot = self._free_slot()
        assert slot is not None, "a grown batch has free slots"
        self._batch.insert(slot, spec)
        self._batch.process_prompt(slot, list(req.origin_input_ids))
        self._slot[rid], self._rid[slot], self._req[slot] = slot, rid, req
        self._fed[slot], self._specs[slot], self._flags[slot] = 0, spec, []
        return slot

    def feed(self, slots: np.ndarray) -> None:
        """Advance the given slots over their new output tokens (one core call per position)."""
        pending = [(int(s), self._req[int(s)].output_ids) for s in slots if s >= 0]
        for s, out in pending:
            if len(out) < self._fed[s]:  # retracted with input_embeds: output discarded, replay
                self._batch.reset(s)
                self._batch.process_prompt(s, list(self._req[s].origin_input_ids))
                self._fed[s], self._flags[s] = 0, []
                self._taken.drop(s)
        pending = [(s, out) for s, out in pending if len(out) > self._fed[s]]
        while pending:
            rows = np.fromiter((s for s, _ in pending), np.int64, len(pending))
            toks = np.fromiter((out[self._fed[s]] for s, out in pending), np.int64, len(pending))
            flags = self._taken.take(rows.tolist())
            self._batch.advance(toks, rows, flags)
            for (s, _), f in zip(pending, flags.tolist(), strict=True):
                self._fed[s] += 1
                self._flags[s].append(f)
            pending = [(s, out) for s, out in pending if len(out) > self._fed[s]]

    def process(self, logits_BV: torch.Tensor, params_B: Sequence[dict[str, Any] | None]) -> torch.Tensor:
        with self._lock:
            slots = self.slots_for(params_B)
            self.feed(slots)
            used = slots >= 0
            if not used.any():
                return logits_BV
            rows = np.nonzero(used)[0].astype(np.int64)
            governed = slots[used]
            force, redirect, ban = self._buffers.run(self._batch, governed)
            phase = self._batch.accounting().phase[governed]
            stop = (phase == Phase.DONE) | (phase == Phase.ERROR)
            if stop.any():  # finished budgets and error rows end with EOS
                force[stop] = [self._specs[int(s)].eos[0] for s in governed[stop]]
                redirect[stop] = -1
            # Sampled requests decide an end attempt by a draw at their temperature; greedy ones by argmax.
            temp = np.fromiter((_temperature(self._req[int(s)]) for s in governed), np.float64, len(rows))
            self._generator = generator_on(self._generator, logits_BV.device)
            taken = apply_mask(
                logits_BV, rows, force, redirect, ban,
                sample_N=temp > 1e-5, temperature_N=temp, generator=self._generator,
            )  # fmt: skip
            self._taken.record(governed, taken)
            self._report(governed, taken)
            return logits_BV

    def _report(self, slots: np.ndarray, taken_N: torch.Tensor) -> None:
        """Keep each request's flags in its ``customized_info`` (entry ``k``: output token ``k``)."""
        for i, s in enumerate(slots.tolist()):
            req = self._req[s]
            info: Any = getattr(req, "customized_info", _NO_INFO)
            if info is _NO_INFO:  # an SGLang release without per-request customized_info
                continue
            if info is None:
                info = req.customized_info = {}
            entries = info.setdefault(REDIRECT_INFO, [])
            fed = self._flags[s]  # the flags of the output tokens fed so far, in order
            del entries[len(fed) :]  # last step's pending flag (now in fed), or entries of a replay
            entries.extend(fed[len(entries) :])
            entries.append(_PendingFlag(taken_N, i))

    def row_state(self, rid: str) -> dict[str, int | bool] | None:
        """The core's state of request ``rid`` (None when unknown or freed)."""
        slot = self._slot.get(rid)
        return None if slot is None else self._batch.row_state(slot)

    def collect(self) -> None:
        """Free the slots of requests that no longer exist (also done when the batch fills up)."""
        with self._lock:
            self._collect_dead()


# One registry per process: SGLang creates processor instances freely, state must outlive them.
REGISTRY = BudgetRegistry()


class BudgetForcingLogitProcessor(_SglangProcessor):
    """SGLang custom logit processor: per-request budget forcing (``custom_params["s1kit_budget"]``)."""

    registry: BudgetRegistry = REGISTRY

    def __call__(self, logits: torch.Tensor, custom_param_list: list[dict[str, Any]] | None = None) -> Any:
        if not custom_param_list:
            return logits
        if len(custom_param_list) != logits.shape[0]:
            raise ValueError(
                f"got {logits.shape[0]} logits rows but {len(custom_param_list)} custom params: "
                "SGLang passes one params dict per logits row"
            )
        if _watermark_on():
            raise RuntimeError(
                "s1kit budget forcing does not run with SGLang's --enable-watermark: the watermarking "
                "sampler would resample forced tokens; start the server without it"
            )
        if _overlap_lags():
            raise RuntimeError(
                "s1kit budget forcing needs each request's previous token before it masks the next, and "
                "SGLang's overlap scheduler samples before it processes the previous step (output_ids one "
                "token behind); start SGLang with SGLANG_ENABLE_DELAY_SAMPLE=1 (keeps the overlap; "
                "sampling waits for the previous step, as SGLang does for grammars) or with "
                "--disable-overlap-schedule"
            )
        return self.registry.process(logits, custom_param_list)


_LAGS: bool | None = None


def _overlap_lags() -> bool:
    """Whether SGLang samples a step before the previous step's token reaches its requests (0.5.23:
    the overlap scheduler without ``SGLANG_ENABLE_DELAY_SAMPLE``); read once per process."""
    global _LAGS
    if _LAGS is None:
        try:
            from sglang.srt.environ import envs
            from sglang.srt.runtime_context import get_schedule
        except ImportError:  # other SGLang releases: not known to lag
            _LAGS = False
            return _LAGS
        try:
            overlap = not get_schedule().disable_overlap_schedule
        except Exception:  # no server context (the processor driven outside a server): not cached
            return False
        _LAGS = overlap and not envs.SGLANG_ENABLE_DELAY_SAMPLE.get()
    return _LAGS


def _watermark_on() -> bool:
    try:
        from sglang.srt.runtime_context import get_exec
    except ImportError:  # other SGLang releases: no watermarking
        return False
    try:
        return bool(get_exec().features.enable_watermark)
    except Exception:  # no server context (the processor driven outside a server)
        return False
