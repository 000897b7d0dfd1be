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
- **A forced token gets logit** ``1e9`` (:data:`~s1kit.budget.adapters.masking.FORCED_LOGIT`), the
  rest of its row is left alone (no pass over the vocabulary): the answer prefix at the cap, the
  rest of an extension, the stopping EOS. Exact because everything SGLang 0.5.23 applies after
  custom processors is the temperature, a softmax, top-k/top-p/min-p or the argmax, under which
  every other logit (``< 1e8``) has probability exactly 0 for temperatures up to ``1e6``; penalties
  run before. Float16 logits (where ``1e9`` overflows) get a ``-inf`` fill instead. Returned top
  logprobs show the other tokens at about ``-1e9 / T`` rather than ``-inf``.
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
from typing import Any, NamedTuple

import numpy as np
import torch

from s1kit.budget.adapters.masking import (
    FORCED_LOGIT,
    MaskBuffers,
    RedirectFlags,
    apply_mask,
    force_tokens,
    generator_on,
)
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.budget.batch import BudgetBatch, Phase

try:  # The adapter runs (and is tested) without SGLang; inside SGLang it is a real subclass.
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as _SglangProcessor
except ImportError:  # pragma: no cover - depends on the environment
    _SglangProcessor = object

__all__ = ["KEY", "REDIRECT_INFO", "BudgetForcingLogitProcessor", "BudgetRegistry"]

# The request's ``customized_info`` key holding the per-token redirect flags (see the module doc).
REDIRECT_INFO = "s1kit_redirect"
_DONE = int(Phase.DONE)
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


class _Rows(NamedTuple):
    """What one call's params give: the slot per row (-1: not governed), the governed rows, their
    slots and their requests (weak proxies)."""

    slots: np.ndarray
    rows: np.ndarray
    governed: np.ndarray
    reqs: list[Any]


class BudgetRegistry:
    """Per-request budget state for one process: a growing :class:`BudgetBatch` keyed by request id.

    Per-slot numbers (tokens fed, temperature, EOS) live in numpy arrays, so that a step costs a
    fixed number of numpy and torch calls plus a few Python operations per row (reading the row's
    ``output_ids``, appending its redirect flag); a call with the same params dicts as the previous
    one (SGLang builds each request's dict once and passes the same objects every step of a batch)
    reuses the previous call's slots.
    """

    def __init__(self, capacity: int = 64) -> None:
        self._batch = BudgetBatch(capacity, max_rollback=0)
        self._slot: dict[str, int] = {}  # rid -> slot
        self._req: dict[int, Any] = {}  # slot -> the request's weak proxy
        self._rid: dict[int, str] = {}  # slot -> rid
        self._specs: dict[int, Any] = {}  # slot -> spec (to rebuild the batch when it grows)
        self._ones: dict[int, set[int]] = {}  # slot -> output positions fed with redirect flag 1
        self._fed = np.zeros(capacity, np.int64)  # slot -> output tokens fed to the core
        self._temperature = np.zeros(capacity, np.float64)  # slot -> sampling temperature (0: greedy)
        self._eos = np.full(capacity, -1, np.int64)  # slot -> the token that stops a finished row
        self._taken = RedirectFlags()  # per slot: did the last mask take its redirect
        self._generator: torch.Generator | None = None
        self._buffers = MaskBuffers(capacity, 1)
        # The previous call's params: their ids, the dicts themselves (so that the ids stay unique)
        # and what was derived from them (see _Rows).
        self._last: tuple[list[int], list[Any], _Rows] | None = None
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
            ones = self._ones[slot]
            for k, t in enumerate(list(req.output_ids)[: self._fed[slot]]):
                new.advance(
                    np.asarray([t], np.int64), np.asarray([slot], np.int64), np.asarray([k in ones], np.uint8)
                )
        self._batch = new
        extra = new.capacity - old.capacity
        self._fed = np.concatenate([self._fed, np.zeros(extra, np.int64)])
        self._temperature = np.concatenate([self._temperature, np.zeros(extra, np.float64)])
        self._eos = np.concatenate([self._eos, np.full(extra, -1, np.int64)])

    def _collect_dead(self) -> None:
        for slot, req in list(self._req.items()):
            try:
                req.rid  # noqa: B018 - a dead weak proxy raises here
            except ReferenceError:
                self._free(slot)

    def _free(self, slot: int) -> None:
        self._last = None
        self._batch.remove(slot)
        del self._slot[self._rid.pop(slot)], self._req[slot], self._specs[slot], self._ones[slot]
        self._fed[slot], self._eos[slot] = 0, -1
        self._taken.drop(slot)

    def same_rows(self, params_B: Sequence[dict[str, Any] | None]) -> bool:
        """Whether ``params_B`` are the previous call's params dicts, in the same order."""
        last = self._last
        return last is not None and last[0] == list(map(id, params_B))

    def slots_for(self, params_B: Sequence[dict[str, Any] | None]) -> np.ndarray:
        """Slot per row (-1: the row does not use budget forcing); admits new requests."""
        return self._rows_for(params_B).slots

    def _rows_for(self, params_B: Sequence[dict[str, Any] | None]) -> _Rows:
        ids = list(map(id, params_B))
        last = self._last
        if last is not None and last[0] == ids:
            return last[2]
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
        rows = np.nonzero(slots >= 0)[0]
        governed = slots[rows]
        found = _Rows(slots, rows, governed, [self._req[s] for s in governed.tolist()])
        self._last = (ids, list(params_B), found)
        return found

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
        self._specs[slot], self._ones[slot] = spec, set()
        self._fed[slot], self._eos[slot], self._temperature[slot] = 0, spec.eos[0], _temperature(req)
        self._taken.drop(slot)
        return slot

    def _restart(self, slot: int) -> None:
        """Rebuild ``slot`` from its prompt (its output was discarded; it is replayed from 0)."""
        self._batch.reset(slot)
        self._batch.process_prompt(slot, list(self._req[slot].origin_input_ids))
        self._fed[slot] = 0
        self._ones[slot].clear()
        self._taken.drop(slot)

    def feed(self, slots: np.ndarray) -> None:
        """Advance the given slots over their new output tokens (one core call per position)."""
        live = slots[slots >= 0]
        self._feed(live, [self._req[s] for s in live.tolist()])

    def _feed(self, live: np.ndarray, reqs: list[Any]) -> None:
        if not len(live):
            return
        outs = [r.output_ids for r in reqs]
        lens = np.fromiter(map(len, outs), np.int64, len(outs))
        fed = self._fed[live]
        if np.count_nonzero(lens - fed != 1) == 0:  # the usual step: one new token per row
            toks = np.fromiter((o[-1] for o in outs), np.int64, len(outs))
            self._advance(live, fed, toks)
            return
        for k in np.nonzero(lens < fed)[0].tolist():  # retracted with input_embeds: output discarded
            self._restart(int(live[k]))
            fed[k] = 0
        more = lens > fed
        while np.count_nonzero(more):
            sel = np.nonzero(more)[0]
            rows, pos = live[sel], fed[sel]
            toks = np.fromiter(
                (outs[k][p] for k, p in zip(sel.tolist(), pos.tolist(), strict=True)), np.int64, len(sel)
            )
            self._advance(rows, pos, toks)
            fed[sel] += 1
            more = lens > fed

    def _advance(self, rows: np.ndarray, pos: np.ndarray, toks: np.ndarray) -> None:
        """Feed token ``toks[i]`` as output position ``pos[i]`` of slot ``rows[i]``."""
        flags = self._taken.take(rows)
        taken = np.count_nonzero(flags) > 0
        self._batch.advance(toks, rows, flags if taken else None)
        if taken:
            for s, p in zip(rows[flags != 0].tolist(), pos[flags != 0].tolist(), strict=True):
                self._ones[s].add(p)
        self._fed[rows] = pos + 1

    def process(self, logits_BV: torch.Tensor, params_B: Sequence[dict[str, Any] | None]) -> torch.Tensor:
        with self._lock:
            found = self._rows_for(params_B)
            rows, governed = found.rows, found.governed
            self._feed(governed, found.reqs)
            if not len(rows):
                return logits_BV
            force, redirect, ban = self._buffers.run(self._batch, governed)
            phase = self._batch.accounting().phase[governed]
            stop = phase >= _DONE  # DONE or ERROR (governed rows are never EMPTY)
            if np.count_nonzero(stop):  # finished budgets and error rows end with EOS
                force[stop] = self._eos[governed[stop]]
                redirect[stop] = -1
            redirected = redirect >= 0
            if not np.count_nonzero(redirected):  # no end attempt to redirect: no flag (take() reads 0)
                forced = force >= 0
                if np.count_nonzero(forced):
                    force_tokens(logits_BV, rows[forced], force[forced], forced_logit=FORCED_LOGIT)
                self._report(governed, None, redirected)
                return logits_BV
            # Sampled requests decide an end attempt by a draw at their temperature; greedy ones by argmax.
            temp = self._temperature[governed]
            self._generator = generator_on(self._generator, logits_BV.device)
            taken = apply_mask(
                logits_BV, rows, force, redirect, ban, sample_N=temp > 1e-5, temperature_N=temp,
                generator=self._generator, forced_logit=FORCED_LOGIT,
            )  # fmt: skip
            self._taken.record(governed, taken)
            self._report(governed, taken, redirected)
            return logits_BV

    def _report(self, slots: np.ndarray, taken_N: torch.Tensor | None, redirected_N: np.ndarray) -> None:
        """Keep each request's flags in its ``customized_info`` (entry ``k``: output token ``k``);
        ``taken_N``: this step's flags, pending on the device for the rows ``redirected_N`` marks
        (None when none does: every flag is 0)."""
        pending = redirected_N.tolist()
        for i, (s, n) in enumerate(zip(slots.tolist(), self._fed[slots].tolist(), strict=True)):
            req = self._req[s]
            info: Any = getattr(req, "customized_info", _NO_INFO)
            if info is _NO_INFO:  # an SGLang release without per-request customized_info
                continue
            if info is None:
                info = req.customized_info = {}
            entries = info.get(REDIRECT_INFO)
            if entries is None:
                entries = info[REDIRECT_INFO] = []
            if len(entries) != n:  # a replay, or entries written elsewhere: rebuild from the fed flags
                ones = self._ones[s]
                del entries[n:]
                entries.extend(int(k in ones) for k in range(len(entries), n))
            elif n and type(entries[-1]) is _PendingFlag:  # last step's flag, now fed: an int
                entries[-1] = int(n - 1 in self._ones[s])
            entries.append(_PendingFlag(taken_N, i) if taken_N is not None and pending[i] else 0)

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
        # The engine's settings cannot change while a batch runs: checked whenever the rows change.
        same = self.registry.same_rows(custom_param_list)
        if not same and _watermark_on():
            raise RuntimeError(
                "s1kit budget forcing does not run with SGLang's --enable-watermark: the watermarking "
                "sampler would resample forced tokens; start the server without it"
            )
        if not same and _overlap_lags():
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


_WATERMARK: bool | None = None


def _watermark_on() -> bool:
    """Whether SGLang's watermarking sampler is on; read once per process (like :func:`_overlap_lags`,
    not cached while there is no server context)."""
    global _WATERMARK
    if _WATERMARK is None:
        try:
            from sglang.srt.runtime_context import get_exec
        except ImportError:  # other SGLang releases: no watermarking
            _WATERMARK = False
            return _WATERMARK
        try:
            _WATERMARK = bool(get_exec().features.enable_watermark)
        except Exception:  # no server context (the processor driven outside a server): not cached
            return False
    return _WATERMARK
