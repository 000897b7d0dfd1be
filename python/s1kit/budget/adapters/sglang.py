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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from s1kit.budget.adapters.masking import (
    FORCED_LOGIT,
    MaskStep,
    RedirectFlags,
    StepFlags,
    sampled_temperatures,
)
from s1kit.budget.adapters.params import KEY, spec_from_params
from s1kit.budget.batch import BudgetBatch

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


def _flag_list(req: Any) -> list[Any] | None:
    """The request's redirect-flag list, ``customized_info[REDIRECT_INFO]``, made if missing (None
    for an SGLang release whose requests have no ``customized_info``)."""
    info: Any = getattr(req, "customized_info", _NO_INFO)
    if info is _NO_INFO:
        return None
    if info is None:
        info = req.customized_info = {}
    entries = info.get(REDIRECT_INFO)
    if entries is None:
        entries = info[REDIRECT_INFO] = []
    return entries


def _temperature(req: Any) -> float:
    """The request's sampling temperature (0: greedy), from SGLang's request object. SGLang stores
    a greedy request (temperature 0) as temperature 1 with ``top_k == 1``."""
    params = getattr(req, "sampling_params", None)
    if getattr(params, "top_k", None) == 1:
        return 0.0
    return float(getattr(params, "temperature", 0.0) or 0.0)


class _Rows(NamedTuple):
    """What one call's params give: the slot per row (-1: not governed), the governed rows, their
    slots, their requests (weak proxies) and their redirect-flag lists (in ``customized_info``)."""

    slots: np.ndarray
    rows: np.ndarray
    governed: np.ndarray
    reqs: list[Any]
    entries: list[list[Any]]
    temperature: np.ndarray | None  # per governed row (None: every row is greedy)


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
        self._taken = RedirectFlags()  # per slot: did the last mask take its redirect
        self._step = MaskStep(capacity, forced_logit=FORCED_LOGIT)
        # slot -> its request's customized_info[REDIRECT_INFO] list, made on admission (the dict
        # SGLang keeps per request, created once); a list of its own where the release has no
        # customized_info (self._info False: nothing is reported).
        self._entries: dict[int, list[Any]] = {}
        self._info = True
        self._pending: list[int] = []  # slots whose last entry is a _PendingFlag (device flags)
        self._new_rows = True  # the rows changed since the last report
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
        del self._entries[slot]
        self._fed[slot] = 0
        self._taken.drop(slot)

    def slots_for(self, params_B: Sequence[dict[str, Any] | None]) -> np.ndarray:
        """Slot per row (-1: the row does not use budget forcing); admits new requests."""
        return self._rows_for(params_B).slots

    def _rows_for(
        self, params_B: Sequence[dict[str, Any] | None], on_new_rows: Callable[[], None] | None = None
    ) -> _Rows:
        ids = list(map(id, params_B))
        last = self._last
        if last is not None and last[0] == ids:
            return last[2]
        if on_new_rows is not None:
            on_new_rows()
        self._new_rows = True
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
        listed = governed.tolist()
        entries = [self._entries[s] for s in listed]
        found = _Rows(
            slots, rows, governed, [self._req[s] for s in listed], entries,
            sampled_temperatures(self._temperature[governed]),
        )  # fmt: skip
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
        self._fed[slot], self._temperature[slot] = 0, _temperature(req)
        entries = _flag_list(req)
        self._info = entries is not None
        self._entries[slot] = [] if entries is None else entries
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

    def _feed(self, live: np.ndarray, reqs: list[Any]) -> bool:
        """Feed the rows; whether this was the usual step (each row gained exactly one token)."""
        if not len(live):
            return True
        outs = [r.output_ids for r in reqs]
        lens = np.fromiter(map(len, outs), np.int64, len(outs))
        fed = self._fed[live]
        if not np.count_nonzero(lens - fed != 1):  # the usual step: one new token per row
            toks = np.fromiter((o[-1] for o in outs), np.int64, len(outs))
            self._advance(live, fed, toks, lens)
            return True
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
        return False

    def _advance(
        self, rows: np.ndarray, pos: np.ndarray, toks: np.ndarray, after: np.ndarray | None = None
    ) -> None:
        """Feed token ``toks[i]`` as output position ``pos[i]`` of slot ``rows[i]`` (``after``:
        ``pos + 1``, when the caller has it)."""
        flags = self._taken.take(rows)
        if flags is None:
            self._batch.advance(toks, rows)
        else:
            self._batch.advance(toks, rows, flags)
            for s, p in zip(rows[flags != 0].tolist(), pos[flags != 0].tolist(), strict=True):
                self._ones[s].add(p)
        self._fed[rows] = pos + 1 if after is None else after

    def process(
        self,
        logits_BV: torch.Tensor,
        params_B: Sequence[dict[str, Any] | None],
        on_new_rows: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """One step: feed, edit ``logits_BV`` in place, report the flags. ``on_new_rows`` is called
        first whenever the rows differ from the previous call's (the processor's engine checks)."""
        with self._lock:
            found = self._rows_for(params_B, on_new_rows)
            rows, governed = found.rows, found.governed
            usual = self._feed(governed, found.reqs)
            if not len(rows):
                return logits_BV
            # Sampled requests decide an end attempt by a draw at their temperature; greedy ones by argmax.
            step = self._step.run(self._batch, logits_BV, governed, rows, found.temperature)
            if step.flags_N is not None:  # else no end attempt was redirected: take() reads 0
                self._taken.record(governed, step.flags_N)
            if self._info:  # else an SGLang release without customized_info
                self._report(governed, found.entries, step, check=self._new_rows or not usual)
            self._new_rows = False
            return logits_BV

    def _report(self, slots: np.ndarray, entries_N: list[list[Any]], step: StepFlags, *, check: bool) -> None:
        """Keep each request's flags in its ``customized_info`` list (entry ``k``: output token
        ``k``). Host flags are final now; device flags are kept as a :class:`_PendingFlag` for the
        rows ``step.redirected_N`` marks (the others are 0) and become ints once fed.

        After each call every list has one entry per token fed plus the one being sampled, so a
        usual step on the same rows (one new token each) keeps them aligned; ``check``: the rows
        changed or were replayed, so lists are compared with the tokens fed and rebuilt."""
        for s in self._pending:  # last step's device flags, fed since: ints (no device sync)
            entries = self._entries.get(s)
            if entries and type(entries[-1]) is _PendingFlag:
                entries[-1] = int(len(entries) - 1 in self._ones[s])
        self._pending = []
        if check:
            fed = self._fed[slots]
            lens = np.fromiter(map(len, entries_N), np.int64, len(entries_N))
            for k in np.nonzero(lens != fed)[0].tolist():  # rebuild from the fed flags
                entries, n, ones = entries_N[k], int(fed[k]), self._ones[int(slots[k])]
                del entries[n:]
                entries.extend(int(p in ones) for p in range(len(entries), n))
        flags = step.flags_N
        if flags is None:
            for entries in entries_N:
                entries.append(0)
        elif isinstance(flags, np.ndarray):
            for entries, f in zip(entries_N, flags.tolist(), strict=True):
                entries.append(f)
        else:
            assert step.redirected_N is not None
            for i, (entries, r) in enumerate(zip(entries_N, step.redirected_N.tolist(), strict=True)):
                entries.append(_PendingFlag(flags, i) if r else 0)
                if r:
                    self._pending.append(int(slots[i]))

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
        return self.registry.process(logits, custom_param_list, _check_engine)


def _check_engine() -> None:
    """Refuse engine settings the processor cannot run under (see the module docstring)."""
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
