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

A forced row is edited in one of two ways (``apply_mask(forced_logit=...)``, :func:`force_tokens`):
by default every other token of the row gets ``-inf`` and the forced one 0 (exact whatever the stack
does afterwards, at the cost of a pass over the row's vocabulary); with ``forced_logit`` (the
serving adapters pass :data:`FORCED_LOGIT`, ``1e9``) only the forced cell is set. That is exact
where the stack, after this edit, only divides by a temperature and normalizes, truncates or takes
the argmax (SGLang; vLLM too, whose penalties run in between and keep the forced logit far above
every other for ordinary penalty values): for every other logit ``x`` below ``1e8`` and any
temperature up to ``1e6``, ``exp((x - 1e9) / T)`` is exactly 0 in float32 and bfloat16, so the
forced token has probability 1 and top-k, top-p and min-p keep only it. Logits of other dtypes (float16, whose
largest value is 65504) get the ``-inf`` fill instead, since ``1e9`` would overflow to ``inf``.

The engine adapters run a whole step through :class:`MaskStep`: where the logits are in host
memory (a CPU build of the engine; float32 or float64, :data:`HOST_EDIT`), one core call plans
every row, stops the finished ones, edits the cells and writes the flags
(:meth:`BudgetBatch.mask_logits`: the same cells, comparisons and values as :func:`apply_mask`, in
Rust); elsewhere (a GPU, bfloat16) :meth:`BudgetBatch.mask` and :func:`apply_mask` run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.batch import BudgetBatch

# A forced token's logit where one cell is set (see the module docstring): every other finite logit
# then has probability exactly 0 after temperature and normalization (vLLM's own thinking budget
# forces the same way). Dtypes that hold it with room for a division by a temperature down to 1e-6:
FORCED_LOGIT = 1.0e9
_ONE_CELL_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


# vLLM's threshold: a request with a lower sampling temperature is decoded greedily.
GREEDY_BELOW = 1e-5


def sampled_temperatures(temperature_N: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """``temperature_N`` when some entry is sampled (not below :data:`GREEDY_BELOW`), else None
    (every entry is greedy): what :meth:`MaskStep.run` takes."""
    return temperature_N if np.count_nonzero(temperature_N >= GREEDY_BELOW) else None


class MaskBuffers:
    """Host buffers for one mask call over at most ``capacity`` rows (reused every step)."""

    def __init__(self, capacity: int, width: int) -> None:
        self.resize(capacity, width)

    def resize(self, capacity: int, width: int) -> None:
        self.force = np.empty(capacity, np.int64)
        self.redirect = np.empty(capacity, np.int64)
        self.ban = np.empty((capacity, max(width, 1)), np.int32)

    def views(self, batch: BudgetBatch, n: int) -> tuple[np.ndarray, ...]:
        """``(force_N, redirect_N, ban_NK)`` for ``n`` entries of ``batch``'s mask (grown as needed)."""
        width = max(batch.ban_width, 1)
        if n > len(self.force) or width > self.ban.shape[1]:
            self.resize(max(n, len(self.force)), max(width, self.ban.shape[1]))
        return self.force[:n], self.redirect[:n], self.ban[:n]

    def run(self, batch: BudgetBatch, slots_N: npt.NDArray[np.int64]) -> tuple[np.ndarray, ...]:
        """Mask the slots ``slots_N``; returns views ``(force_N, redirect_N, ban_NK)``."""
        force, redirect, ban = self.views(batch, len(slots_N))
        batch.mask(force, redirect, ban, slots_N)
        return force, redirect, ban


def generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """``generator`` when it lives on ``device``, else a new one there seeded with 0: the draws an
    adapter makes for sampled end attempts (``apply_mask(generator=...)``)."""
    if generator is None or generator.device != device:
        generator = torch.Generator(device=device)
        generator.manual_seed(0)
    return generator


def force_tokens(
    logits_BV: torch.Tensor,
    rows_N: npt.NDArray[np.int64],
    tokens_N: npt.NDArray[np.int64],
    *,
    forced_logit: float | None = None,
) -> None:
    """Give token ``tokens_N[i]`` all the probability of logits row ``rows_N[i]``, in place.

    ``forced_logit=None``: the rest of the row gets ``-inf`` and the token 0 (exact after any later
    processing). A value (e.g. :data:`FORCED_LOGIT`): only the token's cell is set to it, where the
    logits' dtype is float32, float64 or bfloat16, else the ``-inf`` fill (see the module docstring
    for when one cell is exact).
    """
    dev = logits_BV.device
    r = torch.from_numpy(np.ascontiguousarray(rows_N, np.int64)).to(dev)
    t = torch.from_numpy(np.ascontiguousarray(tokens_N, np.int64)).to(dev)
    if forced_logit is not None and logits_BV.dtype in _ONE_CELL_DTYPES:
        logits_BV[r, t] = forced_logit
        return
    logits_BV[r] = float("-inf")
    logits_BV[r, t] = 0.0


# Host logits of these dtypes are edited by the core (MaskStep); tests switch this off to run the
# torch path on CPU too.
HOST_EDIT = True
_HOST_DTYPES = (torch.float32, torch.float64)


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
    forced_logit: float | None = None,
) -> torch.Tensor:
    """Edit ``logits_BV`` in place (entry ``i`` applies to logits row ``rows_N[i]``); return the
    ``(N,)`` bool flags, on the logits' device, to pass to :meth:`BudgetBatch.advance` with the
    emitted tokens (true: an emission of that entry's redirect token stands for its end attempt).

    ``sample_N``: entries whose row is sampled (default: none, every row is greedy);
    ``temperature_N``: their temperature as the stack applies it after this edit (default 1: the
    logits are already the final ones); ``generator``: the source of the uniform draws;
    ``forced_logit``: how forced entries are edited (:func:`force_tokens`).
    """
    dev = logits_BV.device
    neg = float("-inf")
    n = len(rows_N)
    forced = force_N >= 0
    if np.count_nonzero(forced):  # (count_nonzero: a C call; ndarray.any goes through Python)
        force_tokens(logits_BV, rows_N[forced], force_N[forced], forced_logit=forced_logit)
    redirected = redirect_N >= 0
    if not np.count_nonzero(redirected):
        return torch.zeros(n, dtype=torch.bool, device=dev)
    every = np.count_nonzero(redirected) == n
    idx = np.arange(n) if every else np.nonzero(redirected)[0]
    ban = ban_NK if every else ban_NK[idx]
    keep = ban >= 0
    target = redirect_N[idx].astype(np.int64)
    # Column 0: the redirect token; then the banned ids (padding points at the redirect token, which
    # is never banned: the spec validation guarantees it). Only these (R, 1 + K) cells are touched.
    cols_np = np.concatenate([target[:, None], np.where(keep, ban, target[:, None])], 1)
    # The cells as flat indices into the row-major logits (one gather, one write; 2-D indexing
    # where the logits are not contiguous).
    contiguous = logits_BV.is_contiguous()
    cells_np = np.asarray(rows_N, np.int64)[idx, None] * logits_BV.shape[1] + cols_np
    # Per banned cell, whether its id is below the redirect token's (padding: equal, so never).
    lower_np = cols_np[:, 1:] < target[:, None]
    banned_np = np.concatenate([np.zeros((len(idx), 1), np.bool_), keep], 1)
    flat = logits_BV.view(-1) if contiguous else None
    at = torch.from_numpy(cells_np).to(dev)
    lower = torch.from_numpy(lower_np).to(dev)
    banned = torch.from_numpy(banned_np).to(dev)
    if flat is None:
        r, cols = at[:, :1] // logits_BV.shape[1], torch.from_numpy(cols_np).to(dev)
        cells = logits_BV[r, cols].float()
    else:
        cells = flat.take(at).float()
    x_t, x_b = cells[:, :1], cells[:, 1:]
    # Greedy: the end attempt outranks the redirect token if one of its logits is higher, or equal
    # with a lower token id (torch.argmax takes the first maximum); the redirect token then gets the
    # best of them. Padding cells hold the redirect token itself: equal value, equal id, never count.
    flag = ((x_b > x_t) | ((x_b == x_t) & lower)).any(1)
    value = cells.amax(1)
    if sample_N is not None and np.count_nonzero(sample_N[idx]):
        temp = np.ones(len(idx)) if temperature_N is None else np.asarray(temperature_N, np.float64)[idx]
        tau = torch.from_numpy(np.maximum(temp, 1e-6)).to(dev, torch.float32)
        z_t, z_b = x_t[:, 0] / tau, x_b.masked_fill(~banned[:, 1:], neg) / tau[:, None]
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
    out = torch.where(banned, neg, value[:, None]).to(logits_BV.dtype)
    if flat is None:
        logits_BV[r, cols] = out
    else:
        flat.put_(at, out)
    if every:
        return flag
    flags_N = torch.zeros(n, dtype=torch.bool, device=dev)  # rows without a redirect: no flag
    flags_N[torch.from_numpy(idx).to(dev)] = flag
    return flags_N


class StepFlags(NamedTuple):
    """What :meth:`MaskStep.run` leaves to the adapter: the entries' redirect flags (a host array
    from the core's host edit, a tensor on the logits' device otherwise; ``None`` when every flag is
    known to be 0: no entry had a redirect, or the host edit set none) and how many rows it stopped
    because they are in their error phase."""

    flags_N: np.ndarray | torch.Tensor | None
    errors: int
    # With device flags: which entries had a redirect (the others' flags are 0); None otherwise.
    redirected_N: np.ndarray | None = None


class MaskStep:
    """One mask-mode decode step of an engine adapter on its ``(B, V)`` logits: plan the governed
    rows, stop the finished ones (done or in the error phase: their first EOS id is forced, so that
    the engine's own EOS check ends the request), edit, and return the redirect flags.

    Host logits (CPU, float32 or float64, C-contiguous, not requiring grad; :data:`HOST_EDIT`) take
    one core call (:meth:`BudgetBatch.mask_logits`); other logits (a GPU, bfloat16)
    :meth:`BudgetBatch.mask` then :func:`apply_mask` or :func:`force_tokens`. Both edit the same
    cells with the same values and decide a greedy row's flag alike. A sampled row's end attempt is
    decided by a uniform draw: from a numpy generator on the host path, from a torch generator on
    the logits' device otherwise, each seeded 0 when the ``MaskStep`` is made.
    """

    def __init__(self, capacity: int, *, forced_logit: float | None = FORCED_LOGIT) -> None:
        self.forced_logit = forced_logit
        self._buffers = MaskBuffers(capacity, 1)
        self._flags = np.zeros(capacity, np.uint8)
        self._rng = np.random.default_rng(0)
        self._generator: torch.Generator | None = None

    def run(
        self,
        batch: BudgetBatch,
        logits_BV: torch.Tensor,
        slots_N: npt.NDArray[np.int64],
        rows_N: npt.NDArray[np.int64],
        temperature_N: npt.NDArray[np.float64] | None,
    ) -> StepFlags:
        """Edit logits row ``rows_N[i]`` for slot ``slots_N[i]`` in place; ``temperature_N``: per
        entry, the temperature the stack samples that row at after this edit (below
        :data:`GREEDY_BELOW`: greedy), or None when every row is greedy (:func:`sampled_temperatures`
        gives one or the other)."""
        n = len(slots_N)
        if (
            HOST_EDIT
            and logits_BV.is_cpu
            and logits_BV.dtype in _HOST_DTYPES
            and logits_BV.is_contiguous()
            and not logits_BV.requires_grad
        ):
            if n > len(self._flags):
                self._flags = np.zeros(2 * n, np.uint8)
            flags = self._flags[:n]
            if temperature_N is None:
                edit = batch.mask_logits(
                    logits_BV.numpy(), rows_N, flags, slots_N, forced_logit=self.forced_logit
                )
            else:
                edit = batch.mask_logits(
                    logits_BV.numpy(), rows_N, flags, slots_N, forced_logit=self.forced_logit,
                    temperature_N=np.where(temperature_N >= GREEDY_BELOW, temperature_N, 0.0),
                    uniform_N=self._rng.random(n),
                )  # fmt: skip
            return StepFlags(flags if edit.flagged else None, edit.stopped_error)
        force, redirect, ban = self._buffers.views(batch, n)
        errors = batch.mask(force, redirect, ban, slots_N, stop_finished=True).error
        if not np.count_nonzero(redirect >= 0):  # no end attempt to redirect: no flag
            forced = force >= 0
            if np.count_nonzero(forced):
                force_tokens(logits_BV, rows_N[forced], force[forced], forced_logit=self.forced_logit)
            return StepFlags(None, errors)
        self._generator = generator_on(self._generator, logits_BV.device)
        taken = apply_mask(
            logits_BV, rows_N, force, redirect, ban,
            sample_N=None if temperature_N is None else temperature_N >= GREEDY_BELOW,
            temperature_N=temperature_N, generator=self._generator, forced_logit=self.forced_logit,
        )  # fmt: skip
        return StepFlags(taken, errors, redirect >= 0)


class RedirectFlags:
    """Per slot, the flag :func:`apply_mask` returned at its last step, until that step's token is
    fed to :meth:`BudgetBatch.advance`. ``record`` keeps the device flags without a sync; ``take``
    copies them to the host once, when the tokens are fed (which needs the host anyway). One host
    array indexed by slot (grown on demand): every call is a fixed number of numpy ops."""

    def __init__(self) -> None:
        self._pending: list[tuple[npt.NDArray[np.int64], torch.Tensor]] = []
        self._flags = np.zeros(0, np.uint8)
        self._set = False  # some entry of _flags may be nonzero

    def _fit(self, slot: int) -> None:
        if slot >= len(self._flags):
            grown = np.zeros(max(slot + 1, 2 * len(self._flags)), np.uint8)
            grown[: len(self._flags)] = self._flags
            self._flags = grown

    def record(self, slots_N: npt.NDArray[np.int64], taken_N: torch.Tensor | np.ndarray) -> None:
        """The flags :func:`apply_mask` (a tensor, kept until needed) or
        :meth:`BudgetBatch.mask_logits` (a host array, copied now) gave the slots ``slots_N``."""
        if not len(slots_N):
            return
        if isinstance(taken_N, np.ndarray):
            self._resolve()  # keep the order of the steps
            self._write(slots_N, taken_N)
        else:
            self._pending.append((np.array(slots_N, np.int64), taken_N))

    def _write(self, slots: npt.NDArray[np.int64], taken: np.ndarray) -> None:
        try:
            self._flags[slots] = taken
        except IndexError:  # a slot beyond the array: grow it (rare), then write
            self._fit(int(slots.max()))
            self._flags[slots] = taken
        self._set = True

    def _resolve(self) -> None:
        for slots, taken in self._pending:
            self._write(slots, taken.cpu().numpy())
        self._pending.clear()

    def take(self, slots: Iterable[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.uint8] | None:
        """The flags for the next token fed to each of ``slots`` (0 where none was recorded);
        ``None`` when no flag is set for any slot (all 0)."""
        if not self._pending and not self._set:
            return None
        s = slots if isinstance(slots, np.ndarray) else np.fromiter(slots, np.int64)
        self._resolve()
        try:
            out = self._flags[s]  # a copy (fancy indexing)
        except IndexError:  # a slot beyond the array: grow it (rare)
            self._fit(int(s.max()))
            out = self._flags[s]
        self._flags[s] = 0
        self._set = bool(np.count_nonzero(self._flags))
        return out

    def move(self, src: int, dst: int) -> None:
        """The row in ``src`` moved to ``dst`` (``dst``'s pending flag is dropped)."""
        self._resolve()
        self._fit(max(src, dst))
        self._flags[dst], self._flags[src] = self._flags[src], 0

    def swap(self, a: int, b: int) -> None:
        self._resolve()
        self._fit(max(a, b))
        self._flags[a], self._flags[b] = self._flags[b], self._flags[a]

    def drop(self, slot: int) -> None:
        self._resolve()
        if slot < len(self._flags):
            self._flags[slot] = 0
