"""Applying the core's mask-mode decisions to a ``(B, V)`` logits tensor, vectorized.

Shapes: ``B`` logits rows, ``N`` rows the core governs, ``R`` of them with a redirect, ``K`` ban
width, ``V`` vocabulary. Per governed row (from :meth:`BudgetBatch.mask`):

- ``force >= 0``: that token gets all the probability.
- ``redirect >= 0``: the banned tokens are the row's attempts to end (an end delimiter or EOS) and
  ``redirect`` is the token override mode would emit instead (an extension's first token, or the
  answer prefix's next token). The edit first decides whether the model attempts to end this step,
  exactly as override mode would see it: for a greedy row, whether the argmax of the row is banned;
  for a sampled row, with probability equal to the banned tokens' total probability under
  ``softmax(logits / temperature)`` (one uniform draw from ``generator``). If it does, the redirect
  is *taken*: the row is forced onto ``redirect``. Otherwise it is *declined*: the banned tokens get
  ``-inf`` and the model's own token goes through (even when it equals ``redirect``: it is then
  not counted as an extension). The returned flags say which rows took their redirect; pass them to
  :meth:`BudgetBatch.advance` with the emitted tokens (:class:`RedirectFlags` keeps them per slot).

Greedy rows therefore emit exactly what override mode emits, with the same accounting. Sampled
rows have exactly override mode's distribution over (token, accounting) when the stack samples from
``softmax(edited logits / temperature)``; processors that run after this edit and change the
distribution (top-k, top-p, min-p, penalties) make the end probability approximate. Decisions are
read on the host (numpy); the edit is a fixed number of device ops and never syncs on the device.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    *,
    sample_N: npt.NDArray[np.bool_] | None = None,
    temperature_N: npt.NDArray[np.floating] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Edit ``logits_BV`` in place (entry ``i`` applies to logits row ``rows_N[i]``); return the
    ``(N,)`` bool tensor, on the logits' device, of the entries that took their redirect.

    ``sample_N``: entries whose row is sampled (default: none, every row is greedy);
    ``temperature_N``: their temperature as the stack applies it after this edit (default 1: the
    logits are already the final ones); ``generator``: the source of the uniform draws.
    """
    dev = logits_BV.device
    neg = float("-inf")
    n = len(rows_N)
    taken_N = torch.zeros(n, dtype=torch.bool, device=dev)
    forced = force_N >= 0
    if forced.any():
        r = torch.from_numpy(rows_N[forced]).to(dev)
        t = torch.from_numpy(force_N[forced]).to(dev)
        logits_BV[r] = neg
        logits_BV[r, t] = 0.0
    redirected = redirect_N >= 0
    if not redirected.any():
        return taken_N
    idx = np.nonzero(redirected)[0]
    ban = ban_NK[idx]
    keep = ban >= 0
    target = redirect_N[idx].astype(np.int64)
    r = torch.from_numpy(rows_N[idx]).to(dev)
    t = torch.from_numpy(target).to(dev)
    # Padding points at the target, which is never banned: writing it back leaves it unchanged.
    cols = torch.from_numpy(np.where(keep, ban, target[:, None]).astype(np.int64)).to(dev)
    keep_t = torch.from_numpy(keep).to(dev)
    sub = logits_BV[r]  # (R, V): the redirect rows, edited here and written back once
    # Greedy: the model attempts to end iff its argmax (first maximum, as torch.argmax) is banned.
    taken = ((cols == sub.argmax(-1, keepdim=True)) & keep_t).any(1)
    if sample_N is not None and sample_N[idx].any():
        temp = np.ones(len(idx)) if temperature_N is None else np.asarray(temperature_N, np.float64)[idx]
        z = sub.float() / torch.from_numpy(np.maximum(temp, 1e-6)).to(dev, torch.float32)[:, None]
        lse_ban = torch.logsumexp(z.gather(1, cols).masked_fill(~keep_t, neg), 1)
        p_end = torch.exp(lse_ban - torch.logsumexp(z, 1))
        u = torch.rand(len(idx), generator=generator, device=dev)
        sampled = torch.from_numpy(sample_N[idx].astype(np.bool_)).to(dev)
        taken = torch.where(sampled, u < p_end, taken)
    # Declined: ban the end attempts. Taken: force the target.
    sub.scatter_(1, cols, sub.gather(1, cols).masked_fill(keep_t, neg))
    at = torch.arange(len(idx), device=dev)
    target_val = torch.where(taken, torch.zeros((), dtype=sub.dtype, device=dev), sub[at, t])
    sub.masked_fill_(taken[:, None], neg)
    sub[at, t] = target_val
    logits_BV[r] = sub
    taken_N[torch.from_numpy(idx).to(dev)] = taken
    return taken_N


class RedirectFlags:
    """Per slot, whether the mask of its last step took the redirect, until that step's token is
    fed to :meth:`BudgetBatch.advance`. ``record`` keeps the device flags without a sync; ``take``
    copies them to the host once, when the tokens are fed (which needs the host anyway)."""

    def __init__(self) -> None:
        self._pending: list[tuple[npt.NDArray[np.int64], torch.Tensor]] = []
        self._flags: dict[int, int] = {}

    def record(self, slots_N: npt.NDArray[np.int64], taken_N: torch.Tensor) -> None:
        """The flags :func:`apply_mask` returned for the slots ``slots_N`` this step."""
        self._pending.append((np.array(slots_N, np.int64), taken_N))

    def _resolve(self) -> None:
        for slots, taken in self._pending:
            for s, f in zip(slots.tolist(), taken.cpu().tolist(), strict=True):
                self._flags[s] = int(f)
        self._pending.clear()

    def take(self, slots: Iterable[int]) -> npt.NDArray[np.uint8]:
        """The flags for the next token fed to each of ``slots`` (0 where none was recorded)."""
        self._resolve()
        return np.fromiter((self._flags.pop(int(s), 0) for s in slots), np.uint8)

    def move(self, src: int, dst: int) -> None:
        """The row in ``src`` moved to ``dst`` (``dst``'s pending flag is dropped)."""
        self._resolve()
        f = self._flags.pop(src, None)
        self._flags.pop(dst, None)
        if f is not None:
            self._flags[dst] = f

    def swap(self, a: int, b: int) -> None:
        self._resolve()
        fa, fb = self._flags.pop(a, None), self._flags.pop(b, None)
        if fa is not None:
            self._flags[b] = fa
        if fb is not None:
            self._flags[a] = fb

    def drop(self, slot: int) -> None:
        self._resolve()
        self._flags.pop(slot, None)
