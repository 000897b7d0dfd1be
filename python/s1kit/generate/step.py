"""The fixed-shape decode step and its CUDA graphs.

Shape legend: B batch bucket, N = max batch (slots), S attended cache positions, V vocabulary.

One step is a pure function of static device buffers::

    tokens_B  = apply_budget_override(sampled_B, override_B)   # budget hook: (sampled) -> tokens
    logits_BV = model(tokens_B, pos_B)                         # writes K/V at pos_B, reads [0, S)
    sampled_B = sample(logits_BV, params, seed_B, counter_B)   # counter-based, no RNG state

``sampled_B`` is both the step's output and the next step's input, so the model's own token never
leaves the device to be fed back. ``override_B`` (-1: keep the sampled token) carries what the host
decided: tokens forced by the budget core, and the last token of rows that were just prefilled or
moved to another slot. With an in-graph budget (:attr:`DecodeStep.budget`, a
:class:`~s1kit.budget.tensor.TensorBudget`), the step ends with ``budget.step(sampled_N)``: the budget
automaton runs on the device and replaces sampled tokens by forced ones in place, so the host applies no
budget override at all.

On CUDA one graph is captured per (batch bucket, attention-length bucket, sampling mode) on first use
and replayed afterwards; on CPU the same function runs eagerly. Host syncs per step: exactly one, the
device-to-host copy of ``sampled_B`` in :meth:`DecodeStep.run` (the budget core, stop checks and
streaming need the tokens). The host-to-device copy of ``(override, pos, counter)`` is asynchronous
from pinned memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.tensor import TensorBudget
from s1kit.generate.cache import StaticKVCache
from s1kit.generate.model import Transformer
from s1kit.generate.sampling import SamplingMode, sample

# Rows of the packed per-step input (one host-to-device copy): see DecodeStep.host_in_3N.
OVERRIDE, POS, COUNTER = 0, 1, 2


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


class DecodeStep:
    """Static buffers for ``max_batch`` slots and the step that reads and writes them."""

    def __init__(self, model: Transformer, cache: StaticKVCache, *, cuda_graphs: bool) -> None:
        self.model = model
        self.cache = cache
        N = cache.max_batch
        dev = model.tok_embeddings.weight.device
        self.device = dev
        self.cuda_graphs = cuda_graphs and dev.type == "cuda"
        self.batch_buckets = batch_buckets(N)
        self.length_buckets = length_buckets(cache.max_len)
        pin = dev.type == "cuda"
        # Host side: written by the engine between steps.
        self.host_in_3N = torch.zeros((3, N), dtype=torch.int64, pin_memory=pin)
        self.host_seed_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        self.host_temperature_N = torch.zeros(N, dtype=torch.float32, pin_memory=pin)
        self.host_top_p_N = torch.ones(N, dtype=torch.float32, pin_memory=pin)
        self.host_top_k_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        self.host_sampled_N = torch.zeros(N, dtype=torch.int64, pin_memory=pin)
        # Device side: what the graphs read and write. Never reallocated.
        self.in_3N = torch.zeros((3, N), dtype=torch.int64, device=dev)
        self.seed_N = torch.zeros(N, dtype=torch.int64, device=dev)
        self.temperature_N = torch.zeros(N, dtype=torch.float32, device=dev)
        self.top_p_N = torch.ones(N, dtype=torch.float32, device=dev)
        self.top_k_N = torch.zeros(N, dtype=torch.int64, device=dev)
        self.sampled_N = torch.zeros(N, dtype=torch.int64, device=dev)
        # In-graph budget forcing over all N slots (rows without a budget are empty slots in it).
        self.budget: TensorBudget | None = None
        self._graphs: dict[tuple[int, int, SamplingMode, bool], torch.cuda.CUDAGraph] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None

    # numpy views of the host buffers (shared memory), for the engine's bookkeeping.
    def host_views(self) -> dict[str, Any]:
        return {
            "override": self.host_in_3N[OVERRIDE].numpy(),
            "pos": self.host_in_3N[POS].numpy(),
            "counter": self.host_in_3N[COUNTER].numpy(),
            "seed": self.host_seed_N.numpy(),
            "temperature": self.host_temperature_N.numpy(),
            "top_p": self.host_top_p_N.numpy(),
            "top_k": self.host_top_k_N.numpy(),
        }

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
        self._graphs = {k: g for k, g in self._graphs.items() if not k[3]}

    def _forward(self, B: int, S: int, mode: SamplingMode, budget: bool = False) -> None:
        """The step itself, on the static buffers: eager on CPU, the captured body on CUDA."""
        tokens_B = apply_budget_override(self.sampled_N[:B], self.in_3N[OVERRIDE, :B])
        pos_B = self.in_3N[POS, :B]
        logits_BV = self.model(tokens_B[:, None], pos_B[:, None], self.cache, 0, S)[:, 0]
        next_B = sample(
            logits_BV.float(),
            self.temperature_N[:B],
            self.top_p_N[:B],
            self.top_k_N[:B],
            self.seed_N[:B],
            self.in_3N[COUNTER, :B],
            mode,
        )
        self.sampled_N[:B].copy_(next_B)
        if budget:
            assert self.budget is not None, "set_budget before running with budget=True"
            # All N slots: slots >= B hold no budget row, so they stay untouched.
            self.budget.step(self.sampled_N)

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

    def run(self, B: int, S: int, mode: SamplingMode, budget: bool = False) -> npt.NDArray[np.int64]:
        """One decode step for slots ``[0, B)``; returns the sampled tokens on the host (with
        ``budget``: the emitted ones, forced tokens in place, after :attr:`budget` stepped)."""
        self.check_shape(B, S)
        self.in_3N.copy_(self.host_in_3N, non_blocking=True)
        if not self.cuda_graphs:
            self._forward(B, S, mode, budget)
        else:
            key = (B, S, mode, budget)
            graph = self._graphs.get(key)
            if graph is None:
                graph = self._capture(B, S, mode, budget)
                self._graphs[key] = graph
            graph.replay()
        self.host_sampled_N.copy_(self.sampled_N, non_blocking=True)
        if self.device.type == "cuda":
            # HOST SYNC (the only one per step): the budget core and the stop checks read the tokens.
            torch.cuda.current_stream(self.device).synchronize()
        out: npt.NDArray[np.int64] = self.host_sampled_N.numpy()[:B]
        return out

    def _capture(self, B: int, S: int, mode: SamplingMode, budget: bool) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream, then capture. The warm-up runs are made idempotent by restoring
        ``sampled_N`` (the step's input) and the budget's buffers after each; their K/V writes repeat
        what the replay writes."""
        live = [self.sampled_N]
        if budget:
            assert self.budget is not None, "set_budget before running with budget=True"
            live += self.budget.mutable_buffers()
        saved = [x.clone() for x in live]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(B, S, mode, budget)
                for dst, src in zip(live, saved, strict=True):
                    dst.copy_(src)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._forward(B, S, mode, budget)
        return graph

    @property
    def n_graphs(self) -> int:
        return len(self._graphs)
