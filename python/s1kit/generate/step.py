"""The fixed-shape decode step, its run-ahead variant and their CUDA graphs.

Shape legend: B batch bucket, N = max batch (slots), S attended cache positions, V vocabulary,
R run-ahead ring (steps between two copy-outs), F budget state fields.

One step is a pure function of static device buffers::

    tokens_B  = apply_budget_override(sampled_B, override_B)   # budget hook: (sampled) -> tokens
    logits_BV = model(tokens_B, pos_B)                         # writes K/V at pos_B, reads [0, S)
    sampled_B = sample(logits_BV, params, seed_B, counter_B)   # counter-based, no RNG state

``sampled_B`` is both the step's output and the next step's input, so the model's own token never
leaves the device to be fed back. ``override_B`` (-1: keep the sampled token) carries what the host
decided: tokens forced by the budget core, and the last token of rows that were just prefilled or
moved to another slot. With an in-graph budget (:attr:`DecodeStep.budget`, a
:class:`~s1kit.budget.tensor.TensorBudget`), the step then runs ``budget.step(sampled_N)``: the budget
automaton runs on the device and replaces sampled tokens by forced ones in place, so the host applies no
budget override at all.

Two ways to drive it:

- :meth:`DecodeStep.run` (the engine's host path): one step, then the device-to-host copy of
  ``sampled_B`` and a synchronisation, because the host's budget core and stop checks read the tokens
  before the next step. The host advances ``pos``/``counter`` and writes ``override`` each step.
- :meth:`DecodeStep.run_ahead` (the engine's tensor path): ``k`` steps queued back to back with no host
  synchronisation between them, then one asynchronous copy-out (:class:`AheadCopy`: pinned memory and
  an event). The "ahead" step keeps the per-row bookkeeping on the device as well: it advances ``pos``
  and ``counter``, clears ``override`` after its first use, writes the emitted tokens into
  ``ring_RN`` (and the budget state into ``state_ring_RFN``), and marks rows done when they emit an EOS
  id (``is_eos_V``), reach their token limit (``LIMIT``: generated tokens at which a row stops) or their
  budget reaches DONE or ERROR. A done row is frozen: its ``pos`` and ``counter`` stop, its ring entries
  are -1, so it never writes K/V past its last position. Rows are independent (attention per row,
  counter-based sampling), so a row's tokens do not depend on how long the others ran ahead.

On CUDA one graph is captured per (batch bucket, attention-length bucket, sampling mode, budget, ahead)
on first use and replayed afterwards; on CPU the same function runs eagerly. The host-to-device copy of
``(override, pos, counter, limit, done)`` is asynchronous from pinned memory; the host writes that
buffer only after the synchronisation that ends a step (:meth:`run`) or a run-ahead window
(:meth:`AheadCopy.result`). :attr:`DecodeStep.host_waits` counts those synchronisations. The engine
reads and writes the host buffers through :meth:`DecodeStep.host_views` (a typed :class:`HostViews`);
the pinned copy-out machinery is :mod:`s1kit.budget.copyout`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.copyout import PinnedBuffers, PinnedCopy
from s1kit.budget.tensor import STATE_FIELDS, TensorBudget
from s1kit.generate.cache import StaticKVCache
from s1kit.generate.model import Transformer
from s1kit.generate.sampling import SamplingMode, sample

# Rows of the packed per-slot input (one host-to-device copy): see DecodeStep.host_in_5N. LIMIT and
# DONE are read by the run-ahead step only.
OVERRIDE, POS, COUNTER, LIMIT, DONE = 0, 1, 2, 3, 4
IN_ROWS = 5


def apply_budget_override(sampled_B: torch.Tensor, override_B: torch.Tensor) -> torch.Tensor:
    """The tokens fed to the model: the forced token where ``override_B >= 0``, else the sampled one."""
    return torch.where(override_B >= 0, override_B, sampled_B)


def batch_buckets(max_batch: int) -> list[int]:
    """Batch sizes a graph is captured for: powers of two up to 16, then steps of 16, then max."""
    out = [b for b in (1, 2, 4, 8, 16) if b < max_batch]
    b = 32
    while b < max_batch:
        out.append(b)
        b += 16 if b < 64 else 32
    return [*out, max_batch]


def length_buckets(max_len: int, smallest: int = 64) -> list[int]:
    """Attention lengths a graph is captured for: powers of two from ``smallest``, then max_len."""
    out = []
    s = smallest
    while s < max_len:
        out.append(s)
        s *= 2
    return [*out, max_len]


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if b >= n:
            return b
    raise ValueError(f"{n} exceeds the largest bucket {buckets[-1]}")


I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HostViews:
    """Numpy views (shared memory, no copy) of the pinned host buffers the engine writes between steps
    and windows; each is ``(N,)``, one entry per slot. :meth:`DecodeStep.run` and
    :meth:`DecodeStep.run_ahead` upload the first five, :meth:`DecodeStep.upload_params` the rest."""

    override: I64  # the token to feed instead of the sampled one, -1: the sampled one
    pos: I64  # the position the next input token is written at
    counter: I64  # tokens generated so far (the sampling counter)
    limit: I64  # run-ahead: the generated-token count at which a row stops
    done: I64  # run-ahead: 1 for rows that are frozen (finished or padding)
    seed: I64
    temperature: npt.NDArray[np.float32]
    top_p: npt.NDArray[np.float32]
    top_k: I64


class GraphKey(NamedTuple):
    """What a captured graph is specialised for."""

    batch: int  # batch bucket B
    length: int  # attention-length bucket S
    mode: SamplingMode
    budget: bool  # the in-graph budget steps
    ahead: bool  # the run-ahead bookkeeping follows the step


class WindowResult(NamedTuple):
    """A run-ahead window on the host: row ``s`` of the rings holds window step ``s``'s emitted tokens
    (-1: the row was already done) and the budget state after it (``None`` without a budget);
    ``in_5N`` holds the per-slot ``pos``/``counter``/``done`` after the window."""

    ring_RN: I64
    in_5N: I64
    state_ring_RFN: I64 | None


class AheadCopy(PinnedCopy):
    """The copy-out of a run-ahead window in flight (CUDA: pinned memory and an event; CPU: done);
    ``step`` is the :class:`DecodeStep` that started it (it counts the host wait)."""

    def __init__(
        self,
        owner: PinnedBuffers,
        buffers: tuple[torch.Tensor, ...],
        present: tuple[bool, ...],
        event: torch.cuda.Event | None,
        *,
        step: DecodeStep,
    ) -> None:
        super().__init__(owner, buffers, present, event)
        self.step = step

    def result(self) -> WindowResult:
        """Wait for the copy (the window's one host synchronisation) and read it. Valid until two more
        copy-outs are started."""
        ring, io, states = self.arrays()
        assert ring is not None and io is not None
        self.step.host_waits += 1
        i64 = np.int64
        state_ring = None if states is None else states.astype(i64, copy=False)
        return WindowResult(ring.astype(i64, copy=False), io.astype(i64, copy=False), state_ring)


class DecodeStep:
    """Static buffers for ``max_batch`` slots and the step that reads and writes them.

    ``ring`` is the longest run-ahead window (:meth:`run_ahead`); ``eos_ids`` the token ids that end a
    row in the run-ahead step.
    """

    def __init__(
        self,
        model: Transformer,
        cache: StaticKVCache,
        *,
        cuda_graphs: bool,
        ring: int = 16,
        eos_ids: Sequence[int] = (),
    ) -> None:
        if ring < 1:
            raise ValueError(f"ring must be >= 1, got {ring}")
        self.model = model
        self.cache = cache
        N = cache.max_batch
        V = model.args.vocab_size
        dev = model.tok_embeddings.weight.device
        self.device = dev
        self.cuda_graphs = cuda_graphs and dev.type == "cuda"
        self.batch_buckets = batch_buckets(N)
        self.length_buckets = length_buckets(cache.max_len)
        pin = dev.type == "cuda"
        self._pin = pin
        # Host side: written by the engine between steps (windows).
        self.host_in_5N = torch.zeros((IN_ROWS, N), dtype=torch.int64, pin_memory=pin)
        self.host_seed_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        self.host_temperature_N = torch.zeros(N, dtype=torch.float32, pin_memory=pin)
        self.host_top_p_N = torch.ones(N, dtype=torch.float32, pin_memory=pin)
        self.host_top_k_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        self.host_sampled_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        # Device side: what the graphs read and write. Never reallocated (the ring only by set_ring).
        self.in_5N = torch.zeros((IN_ROWS, N), dtype=torch.int64, device=dev)
        self.seed_N = torch.zeros(N, dtype=torch.int64, device=dev)
        self.temperature_N = torch.zeros(N, dtype=torch.float32, device=dev)
        self.top_p_N = torch.ones(N, dtype=torch.float32, device=dev)
        self.top_k_N = torch.zeros(N, dtype=torch.int64, device=dev)
        self.sampled_N = torch.zeros(N, dtype=torch.int64, device=dev)
        # Token ids that end a row, plus one False entry for forced ids beyond the model's vocabulary.
        self.is_eos_V = torch.zeros(V + 1, dtype=torch.bool, device=dev)
        self.is_eos_V[[t for t in eos_ids if 0 <= t < V]] = True
        # Window step counter: the ring row the next run-ahead step writes.
        self.ring_at_1 = torch.zeros(1, dtype=torch.int64, device=dev)
        # In-graph budget forcing over all N slots (rows without a budget are empty slots in it).
        self.budget: TensorBudget | None = None
        self._graphs: dict[GraphKey, torch.cuda.CUDAGraph] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self.host_waits = 0  # synchronisations in which the host waited for device results
        self.steps_run = 0  # decode steps executed (replayed or eager)
        self.windows = 0  # run-ahead windows queued
        self.set_ring(ring)

    def set_ring(self, ring: int) -> None:
        """(Re)allocate the run-ahead rings for windows of up to ``ring`` steps (drops "ahead" graphs)."""
        N, dev = self.cache.max_batch, self.device
        self.ring = ring
        self.ring_RN = torch.full((ring, N), -1, dtype=torch.int64, device=dev)
        self.state_ring_RFN = torch.zeros((ring, len(STATE_FIELDS), N), dtype=torch.int64, device=dev)
        self._pinned = PinnedBuffers((self.ring_RN, self.in_5N, self.state_ring_RFN), self._pin)
        self._graphs = {k: g for k, g in self._graphs.items() if not k.ahead}

    def host_views(self) -> HostViews:
        """Numpy views of the host buffers (shared memory), for the engine's bookkeeping."""
        return HostViews(
            override=self.host_in_5N[OVERRIDE].numpy(),
            pos=self.host_in_5N[POS].numpy(),
            counter=self.host_in_5N[COUNTER].numpy(),
            limit=self.host_in_5N[LIMIT].numpy(),
            done=self.host_in_5N[DONE].numpy(),
            seed=self.host_seed_N.numpy(),
            temperature=self.host_temperature_N.numpy(),
            top_p=self.host_top_p_N.numpy(),
            top_k=self.host_top_k_N.numpy(),
        )

    def upload_params(self) -> None:
        """Copy per-row sampling parameters to the device (after rows joined, left or moved)."""
        for dst, src in (
            (self.seed_N, self.host_seed_N),
            (self.temperature_N, self.host_temperature_N),
            (self.top_p_N, self.host_top_p_N),
            (self.top_k_N, self.host_top_k_N),
        ):
            dst.copy_(src, non_blocking=True)

    def set_budget(self, budget: TensorBudget) -> None:
        """Use ``budget`` for in-graph budget forcing; graphs captured with the previous one are dropped."""
        if budget.capacity != self.cache.max_batch:
            raise ValueError(f"the budget has {budget.capacity} slots, the cache {self.cache.max_batch}")
        self.budget = budget
        self._graphs = {k: g for k, g in self._graphs.items() if not k.budget}

    def _forward(self, B: int, S: int, mode: SamplingMode, budget: bool = False, ahead: bool = False) -> None:
        """The step itself, on the static buffers: eager on CPU, the captured body on CUDA."""
        io = self.in_5N
        tokens_B = apply_budget_override(self.sampled_N[:B], io[OVERRIDE, :B])
        pos_B = io[POS, :B]
        logits_BV = self.model(tokens_B[:, None], pos_B[:, None], self.cache, 0, S)[:, 0]
        next_B = sample(
            logits_BV.float(),
            self.temperature_N[:B],
            self.top_p_N[:B],
            self.top_k_N[:B],
            self.seed_N[:B],
            io[COUNTER, :B],
            mode,
        )
        self.sampled_N[:B].copy_(next_B)
        if budget:
            assert self.budget is not None, "set_budget before running with budget=True"
            # All N slots: slots >= B hold no budget row, so they stay untouched.
            self.budget.step(self.sampled_N)
        if ahead:
            self._advance(B, budget)

    def _advance(self, B: int, budget: bool) -> None:
        """The run-ahead bookkeeping after a step: record, count, detect the end, freeze done rows."""
        io = self.in_5N
        done_B = io[DONE, :B] != 0
        live_B = ~done_B
        emitted_B = self.sampled_N[:B]
        at_1 = self.ring_at_1 % self.ring
        self.ring_RN[:, :B].index_copy_(0, at_1, torch.where(live_B, emitted_B, -1)[None])
        counter_B = io[COUNTER, :B] + live_B
        V = self.is_eos_V.shape[0] - 1
        ends_B = self.is_eos_V[emitted_B.clamp(0, V)] | (counter_B >= io[LIMIT, :B])
        if budget:
            assert self.budget is not None
            self.state_ring_RFN.index_copy_(0, at_1, self.budget.state_FB[None])
            ends_B = ends_B | self.budget.done_B[:B]
        now_done_B = done_B | ends_B
        # A row that has just ended keeps its position: it never writes K/V beyond its last token.
        io[POS, :B] += ~now_done_B
        io[COUNTER, :B] = counter_B
        io[DONE, :B] = now_done_B
        io[OVERRIDE, :B] = -1
        self.ring_at_1.add_(1)

    def check_shape(self, B: int, S: int) -> None:
        if self.cache.max_batch < B:
            raise ValueError(
                f"batch size {B} exceeds max_batch={self.cache.max_batch}: build the Engine with a larger "
                "max_batch (Engine.generate itself queues any number of requests)"
            )
        if B not in self.batch_buckets:
            raise ValueError(
                f"batch size {B} is not one of the captured buckets {self.batch_buckets} "
                f"(max_batch={self.cache.max_batch}): pad the batch to bucket_for(n, batch_buckets)"
            )
        if S not in self.length_buckets:
            raise ValueError(
                f"attention length {S} is not one of the buckets {self.length_buckets} "
                f"(max_len={self.cache.max_len}): use bucket_for(max_pos + 1, length_buckets)"
            )

    def _step(self, B: int, S: int, mode: SamplingMode, budget: bool, ahead: bool) -> None:
        self.steps_run += 1
        if not self.cuda_graphs:
            self._forward(B, S, mode, budget, ahead)
            return
        key = GraphKey(B, S, mode, budget, ahead)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._capture(B, S, mode, budget, ahead)
            self._graphs[key] = graph
        graph.replay()

    def run(self, B: int, S: int, mode: SamplingMode, budget: bool = False) -> npt.NDArray[np.int64]:
        """One decode step for slots ``[0, B)``; returns the sampled tokens on the host (with
        ``budget``: the emitted ones, forced tokens in place, after :attr:`budget` stepped)."""
        self.check_shape(B, S)
        self.in_5N.copy_(self.host_in_5N, non_blocking=True)
        self._step(B, S, mode, budget, ahead=False)
        self.host_sampled_N.copy_(self.sampled_N, non_blocking=True)
        if self.device.type == "cuda":
            # HOST SYNC (the only one per step): the budget core and the stop checks read the tokens.
            torch.cuda.current_stream(self.device).synchronize()
        self.host_waits += 1
        out: npt.NDArray[np.int64] = self.host_sampled_N.numpy()[:B]
        return out

    def run_ahead(self, B: int, S: int, mode: SamplingMode, k: int, budget: bool = False) -> AheadCopy:
        """Queue ``k`` run-ahead steps for slots ``[0, B)`` and start copying their results out.

        ``host_in_5N`` holds each slot's ``override``, ``pos``, ``counter``, ``limit`` and ``done``
        (padding slots: done). ``S`` must exceed every position a row feeds in the window: at most
        ``pos + min(k, limit - counter) - 1``. Nothing here waits for the device; the copy's
        :meth:`AheadCopy.result` does, once.
        """
        self.check_shape(B, S)
        if not 1 <= k <= self.ring:
            raise ValueError(f"a run-ahead window of {k} steps does not fit the ring of {self.ring}")
        self.windows += 1
        self.in_5N.copy_(self.host_in_5N, non_blocking=True)
        self.ring_at_1.zero_()
        for _ in range(k):
            self._step(B, S, mode, budget, ahead=True)
        return self.copy_out(budget)

    def copy_out(self, budget: bool) -> AheadCopy:
        """Start copying the rings and the per-slot state to pinned host memory (asynchronous on CUDA)."""
        sources = (self.ring_RN, self.in_5N, self.state_ring_RFN if budget else None)
        return self._pinned.start(sources, functools.partial(AheadCopy, step=self))

    def _capture(self, B: int, S: int, mode: SamplingMode, budget: bool, ahead: bool) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream, then capture. The warm-up runs are made idempotent by restoring
        every buffer the step writes besides the cache (``sampled_N``, the run-ahead state, the
        budget's buffers) after each; their K/V writes repeat what the replay writes."""
        live = [self.sampled_N]
        if ahead:
            live += [self.in_5N, self.ring_RN, self.state_ring_RFN, self.ring_at_1]
        if budget:
            assert self.budget is not None, "set_budget before running with budget=True"
            live += self.budget.mutable_buffers()
        saved = [x.clone() for x in live]
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]  # torch leaves it untyped
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(B, S, mode, budget, ahead)
                for dst, src in zip(live, saved, strict=True):
                    dst.copy_(src)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._forward(B, S, mode, budget, ahead)
        return graph

    @property
    def n_graphs(self) -> int:
        return len(self._graphs)
