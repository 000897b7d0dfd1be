"""Applying the core's mask-mode decisions to a ``(B, V)`` logits tensor, vectorized.

Shapes: ``B`` logits rows, ``N`` rows the core governs, ``R`` of them with a redirect, ``K`` ban
width, ``V`` vocabulary. Per governed row (from :meth:`BudgetBatch.mask`):

- ``force >= 0``: that token gets all the probability.
- ``redirect >= 0``: the banned tokens are the row's attempts to end (an end delimiter or EOS) and
  ``redirect`` is the token override mode would emit instead (an extension's first token, or the
  answer prefix's next token). The banned tokens get ``-inf`` and the redirect token gets their
  probability on top of its own: ``T * logsumexp([logit[r], logit[banned]] / T)`` for a sampled row
  at temperature ``T``, ``max(logit[r], logit[banned])`` for a greedy row. Whether an emission of
  the redirect token then stands for the end attempt (counted, and the rest of "Wait" or the answer
  prefix forced) or is the model's own token is decided here and returned as a flag per row: for a
  greedy row, whether the best end attempt outranks the redirect token (higher logit, or equal with
  a lower id, as ``torch.argmax`` breaks ties); for a sampled row, a uniform draw below the end
  attempts' share of the pooled probability. Pass the flags to :meth:`BudgetBatch.advance` with
  the emitted tokens (:class:`RedirectFlags` keeps them per slot until then).

Greedy rows therefore emit exactly what override mode emits, with the same accounting, except when
the largest logit of the row is tied between an end attempt and another token that is not the
redirect token (exact ties; the edit sees only the banned and redirect cells). Sampled rows have
exactly override mode's joint distribution over (emitted token, accounting) when the stack samples
from ``softmax(edited logits / T)``, but not the same stream for a given seed (the attribution uses
its own draw). Processors that run after this edit and reshape the distribution (top-k, top-p,
min-p, penalties) make it approximate. Only the ``(R, 1 + K)`` cells involved are read and written:
no pass over the vocabulary. Decisions are read on the host
(numpy); the edit is a fixed number of device ops and never syncs on the device.
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


def generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """``generator`` when it lives on ``device``, else a new one there seeded with 0: the draws an
    adapter makes for sampled end attempts (``apply_mask(generator=...)``)."""
    if generator is None or generator.device != device:
        generator = torch.Generator(device=device)
        generator.manual_seed(0)
    return generator


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
    ``(N,)`` bool flags, on the logits' device, to pass to :meth:`BudgetBatch.advance` with the
    emitted tokens (true: an emission of that entry's redirect token stands for its end attempt).

    ``sample_N``: entries whose row is sampled (default: none, every row is greedy);
    ``temperature_N``: their temperature as the stack applies it after this edit (default 1: the
    logits are already the final ones); ``generator``: the source of the uniform draws.
    """
    dev = logits_BV.device
    neg = float("-inf")
    n = len(rows_N)
    flags_N = torch.zeros(n, dtype=torch.bool, device=dev)
    forced = force_N >= 0
    if forced.any():
        r = torch.from_numpy(rows_N[forced]).to(dev)
        t = torch.from_numpy(force_N[forced]).to(dev)
        logits_BV[r] = neg
        logits_BV[r, t] = 0.0
    redirected = redirect_N >= 0
    if not redirected.any():
        return flags_N
    idx = np.nonzero(redirected)[0]
    ban = ban_NK[idx]
    keep = ban >= 0
    target = redirect_N[idx].astype(np.int64)
    r = torch.from_numpy(rows_N[idx].astype(np.int64)).to(dev)
    # Column 0: the redirect token; then the banned ids (padding points at the redirect token, which
    # is never banned: the spec validation guarantees it). Only these (R, 1 + K) cells are touched.
    cols = torch.from_numpy(np.concatenate([target[:, None], np.where(keep, ban, target[:, None])], 1)).to(
        dev
    )
    keep_t = torch.from_numpy(keep).to(dev)
    cells = logits_BV[r[:, None], cols].float()
    x_t, x_b = cells[:, 0], cells[:, 1:].masked_fill(~keep_t, neg)
    # Greedy: the end attempt outranks the redirect token if its best logit is higher, or equal with
    # a lower token id (torch.argmax takes the first maximum); the redirect token then gets it.
    b_max = x_b.amax(1)
    big = torch.iinfo(torch.int64).max
    b_first = torch.where(keep_t & (x_b == b_max[:, None]), cols[:, 1:], big).amin(1)
    flag = (b_max > x_t) | ((b_max == x_t) & (b_first < cols[:, 0]))
    value = torch.maximum(x_t, b_max)
    if sample_N is not None and sample_N[idx].any():
        temp = np.ones(len(idx)) if temperature_N is None else np.asarray(temperature_N, np.float64)[idx]
        tau = torch.from_numpy(np.maximum(temp, 1e-6)).to(dev, torch.float32)
        z_t, z_b = x_t / tau, x_b / tau[:, None]
        lse_b = torch.logsumexp(z_b, 1)
        lse = torch.logaddexp(z_t, lse_b)
        u = torch.rand(len(idx), generator=generator, device=dev)
        sampled = torch.from_numpy(sample_N[idx].astype(np.bool_)).to(dev)
        # The redirect token gets the pooled probability; an emission of it is the end attempt with
        # the end attempts' share of that pool (the same joint law as sampling, then replacing).
        flag = torch.where(sampled, u < torch.exp(lse_b - lse), flag)
        value = torch.where(sampled, tau * lse, value)
    # Banned cells get -inf; padding cells name the redirect token and get its value too, so every
    # write to one cell is the same (index_put with repeated indices is then deterministic).
    out = torch.cat([value[:, None], torch.where(keep_t, neg, value[:, None])], 1)
    logits_BV[r[:, None], cols] = out.to(logits_BV.dtype)
    flags_N[torch.from_numpy(idx).to(dev)] = flag
    return flags_N


class RedirectFlags:
    """Per slot, the flag :func:`apply_mask` returned at its last step, until that step's token is
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
