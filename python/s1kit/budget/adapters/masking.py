"""Applying the core's mask-mode decisions to a ``(B, V)`` logits tensor, vectorized.

Shapes: ``B`` logits rows, ``N`` rows the core governs, ``K`` ban width, ``V`` vocabulary.
Per governed row (from :meth:`BudgetBatch.mask`): ``force >= 0`` gives that token all the
probability; otherwise ``redirect >= 0`` moves the probability of the banned tokens onto it,
``logit[r] = logsumexp(logit[r], logit[banned])``, and bans them. Every decision is read on the
host (numpy), so this issues a fixed number of device ops per step and never syncs on the device.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.batch import BudgetBatch


class MaskBuffers:
    """Host buffers for one mask call over at most ``capacity`` rows (reused every step)."""

    def __init__(self, capacity: int, width: int) -> None:
        self.resize(capacity, width)

    def resize(self, capacity: int, width: int) -> None:
        self.force = np.empty(capacity, np.int64)
        self.redirect = np.empty(capacity, np.int64)
        self.ban = np.empty((capacity, max(width, 1)), np.int32)

    def run(self, batch: BudgetBatch, slots_N: npt.NDArray[np.int64]) -> tuple[np.ndarray, ...]:
        """Mask the slots ``slots_N``; returns views ``(force_N, redirect_N, ban_NK)``."""
        n = len(slots_N)
        width = max(batch.ban_width, 1)
        if n > len(self.force) or width > self.ban.shape[1]:
            self.resize(max(n, len(self.force)), max(width, self.ban.shape[1]))
        force, redirect, ban = self.force[:n], self.redirect[:n], self.ban[:n]
        batch.mask(force, redirect, ban, slots_N)
        return force, redirect, ban


def apply_mask(
    logits_BV: torch.Tensor,
    rows_N: npt.NDArray[np.int64],
    force_N: npt.NDArray[np.int64],
    redirect_N: npt.NDArray[np.int64],
    ban_NK: npt.NDArray[np.int32],
) -> torch.Tensor:
    """Edit ``logits_BV`` in place: entry ``i`` of the decisions applies to logits row ``rows_N[i]``."""
    dev = logits_BV.device
    neg = float("-inf")
    forced = force_N >= 0
    if forced.any():
        r = torch.from_numpy(rows_N[forced]).to(dev)
        t = torch.from_numpy(force_N[forced]).to(dev)
        logits_BV[r] = neg
        logits_BV[r, t] = 0.0
    redirected = redirect_N >= 0
    if redirected.any():
        ban = ban_NK[redirected]
        keep = ban >= 0
        r_host = rows_N[redirected]
        r = torch.from_numpy(r_host).to(dev)
        t = torch.from_numpy(redirect_N[redirected]).to(dev)
        ban_t = torch.from_numpy(np.where(keep, ban, 0).astype(np.int64)).to(dev)
        keep_t = torch.from_numpy(keep).to(dev)
        # Gather only the (R, 1 + K) cells involved: never copy whole rows of the vocabulary.
        cols = torch.cat([t[:, None], ban_t], 1)
        cells = logits_BV[r[:, None], cols].float()
        cells[:, 1:] = cells[:, 1:].masked_fill(~keep_t, neg)
        mass = torch.logsumexp(cells, 1)
        rr, cc = np.nonzero(keep)
        logits_BV[
            torch.from_numpy(r_host[rr]).to(dev), torch.from_numpy(ban[rr, cc].astype(np.int64)).to(dev)
        ] = neg
        logits_BV[r, t] = mass.to(logits_BV.dtype)
    return logits_BV
