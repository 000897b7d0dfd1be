"""Stepping: the prefill of admitted rows, one host-loop decode step, one run-ahead window.

Each runs the model on the device and hands what it produced to the
:class:`~s1kit.generate.booking.Booking` (the only host synchronisations: one per prefill, one per host
step, one per window; see :mod:`s1kit.generate.engine` for the two loops). Before a step or window,
:meth:`Stepper.prepare` sets the padding rows, uploads changed sampling parameters and, on the tensor
path with budget rows, makes the device mirror the budget truth.

Shape legend: B batch rows (bucket), T prompt tokens (padded), V vocabulary, N = max_batch slots,
K window steps, S attention-length bucket.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from s1kit.generate.booking import I64, Booking
from s1kit.generate.budget_state import BudgetState
from s1kit.generate.model import Transformer
from s1kit.generate.sampling import sample, sampling_mode
from s1kit.generate.slots import Row, Slots
from s1kit.generate.step import COUNTER, POS, DecodeStep, bucket_for


class Stepper:
    """Runs prefills, host steps and run-ahead windows for the rows of ``slots``."""

    def __init__(
        self,
        model: Transformer,
        step: DecodeStep,
        slots: Slots,
        budget: BudgetState,
        booking: Booking,
        *,
        tensor: bool,
        sync_every: int,
        compile_budget: bool,
    ) -> None:
        self.model, self.step, self.slots, self.budget, self.booking = model, step, slots, budget, booking
        self.tensor, self.sync_every, self.compile_budget = tensor, sync_every, compile_budget

    def prefill(self, start: int, batch: list[Row]) -> None:
        """Prefill ``batch`` (slots ``start..``), sample each row's first token and book it."""
        t0 = time.perf_counter()
        sampled = self._prefill(start, batch)
        t1 = time.perf_counter()
        tps = sum(len(r.prompt) for r in batch) / max(t1 - t0, 1e-9)
        for row in batch:
            row.prefill_tps = tps
            row.t_decode0 = t1
        self.booking.absorb(start, sampled, prefill=True)

    def _prefill(self, start: int, batch: list[Row]) -> I64:
        dev = self.step.device
        B = len(batch)
        cache = self.step.cache
        # Pad to a multiple of 64 (the cache length is one) so SDPA's mask rows stay aligned.
        T = max(len(r.prompt) for r in batch)
        T = min(-(-T // 64) * 64, cache.max_len)
        tokens_BT = torch.zeros((B, T), dtype=torch.int64)
        for b, row in enumerate(batch):
            tokens_BT[b, : len(row.prompt)] = torch.tensor(row.prompt)
        last_B = torch.tensor([len(r.prompt) - 1 for r in batch], device=dev)
        pos_BT = torch.arange(T, device=dev).expand(B, T)
        # Right padding: a row's padded positions lie after its prompt, are never attended by its real
        # tokens (causal mask) and are overwritten by its decode steps.
        logits_BV = self.model(tokens_BT.to(dev), pos_BT, cache, start, T, last_B=last_B).float()
        h = self.slots.host
        sl = slice(start, start + B)
        first_B = sample(
            logits_BV,
            torch.from_numpy(h.temperature[sl]).to(dev),
            torch.from_numpy(h.top_p[sl]).to(dev),
            torch.from_numpy(h.top_k[sl]).to(dev),
            torch.from_numpy(h.seed[sl]).to(dev),
            torch.zeros(B, dtype=torch.int64, device=dev),
            sampling_mode(
                [r.request.sampling.temperature for r in batch],
                [r.request.sampling.top_p for r in batch],
                [r.request.sampling.top_k for r in batch],
            ),
        )
        # HOST SYNC (once per admission): the first tokens go through the budget core and stop checks.
        out: I64 = first_B.cpu().numpy()
        self.step.host_waits += 1
        return out

    def prepare(self, B: int) -> bool:
        """Padding rows, sampling parameters and the budget's place before a step or window on bucket
        ``B``; returns whether the budget steps on the device."""
        self.slots.prepare(self.step, B)
        on_device = self.tensor and self.budget.rows > 0
        if on_device:
            self.budget.to_device(self.compile_budget)
        return on_device

    def decode_step(self) -> None:
        """The host path: one step, one synchronisation, the budget core and every check on the host."""
        n = len(self.slots)
        B = bucket_for(n, self.step.batch_buckets)
        on_device = self.prepare(B)
        S = bucket_for(int(self.slots.host.pos[:n].max()) + 1, self.step.length_buckets)
        sampled = self.step.run(B, S, self.slots.mode, budget=on_device)
        self.booking.absorb(0, sampled[:n], prefill=False)

    def decode_window(self, waiting: bool) -> None:
        """The tensor path: up to ``sync_every`` steps on the device, one synchronisation, then the
        window's tokens booked row by row in step order. ``waiting``: requests wait for a slot."""
        n = len(self.slots)
        B = bucket_for(n, self.step.batch_buckets)
        h, limit_N = self.slots.host, self.slots.limit_N
        remaining = limit_N[:n] - h.counter[:n]  # >= 1: rows at their limit have left
        k = min(self.sync_every, int(remaining.max()))
        if waiting:
            # Every slot is taken: end the window when the first row reaches its limit, so that its
            # slot is refilled when the host loop would refill it.
            k = min(k, int(remaining.min()))
        # A row feeds positions pos .. pos + min(k, remaining) - 1 in this window.
        S = bucket_for(int((h.pos[:n] + np.minimum(k, remaining)).max()), self.step.length_buckets)
        on_device = self.prepare(B)
        h.limit[:n] = limit_N[:n]
        h.done[:n] = 0
        h.limit[n:B] = 0
        h.done[n:B] = 1  # padding rows stay frozen at position 0
        window = self.step.run_ahead(B, S, self.slots.mode, k, budget=on_device).result()
        self.booking.absorb_window(window.ring_RN[:k, :n], window.state_ring_RFN)
        # The device advanced the rows that are still running; it has consumed the overrides.
        h.pos[:n] = window.in_5N[POS, :n]
        h.counter[:n] = window.in_5N[COUNTER, :n]
        h.override[:n] = -1
