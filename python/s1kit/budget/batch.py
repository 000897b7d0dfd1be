"""BudgetBatch: the per-decode-step driver for a whole batch (a thin shell over the Rust core).

Shapes: ``B`` = entries in one call (all slots, or the slots listed in ``rows``), ``K`` = ban width.
Inputs must not be mutated while a call runs. Per-step calls allocate nothing per row.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from s1kit import _core
from s1kit.budget.spec import BudgetSpec


class Phase(enum.IntEnum):
    """Where a row is; the values are those of the Rust core and the C ABI."""

    PRE_THINK = 0
    THINKING = 1
    ANSWER = 2
    DONE = 3
    ERROR = 4
    EMPTY = 5


class RowError(enum.IntEnum):
    """Why a row is in :attr:`Phase.ERROR`."""

    NONE = 0
    TOKEN_OUT_OF_VOCAB = 1
    MASK_NOT_HONOURED = 2


@dataclass(frozen=True)
class Accounting:
    """Per-slot counters, one entry per slot (empty slots: phase EMPTY, zeros)."""

    phase: npt.NDArray[np.uint8]
    error: npt.NDArray[np.uint8]
    thinking_tokens: npt.NDArray[np.uint32]
    answer_tokens: npt.NDArray[np.uint32]
    forced_tokens: npt.NDArray[np.uint32]
    extensions_used: npt.NDArray[np.uint32]
    capped: npt.NDArray[np.bool_]


IntArray = npt.NDArray[np.int32] | npt.NDArray[np.int64]


class Stopped(NamedTuple):
    """Rows :meth:`BudgetBatch.mask` stopped with EOS (``stop_finished``): done, in their error phase."""

    done: int
    error: int


class HostEdit(NamedTuple):
    """What one :meth:`BudgetBatch.mask_logits` call did, in entries: rows with a token forced, rows
    with a redirect, flags set to 1 (0: every flag is 0), rows stopped with EOS because they are
    done, and because they are in their error phase."""

    forced: int
    redirected: int
    flagged: int
    stopped_done: int
    stopped_error: int


class BudgetBatch:
    """Slot-indexed budget-forcing state for up to ``capacity`` rows with different specs.

    Override mode: after sampling, ``step(sampled_B, out_B)`` writes per entry the token that must
    replace the sampled one, or -1. Mask mode (logits-only stacks): before sampling,
    ``mask(force_B, redirect_B, ban_BK)``; after it, ``advance(emitted_B, rows, redirected_B)``.
    ``max_rollback`` is how many tokens :meth:`rollback` can undo per row.
    """

    def __init__(self, capacity: int, *, max_rollback: int = 32) -> None:
        self._inner = _core.BudgetBatch(capacity, max_rollback=max_rollback)
        self._version = 0

    @property
    def version(self) -> int:
        """Incremented by every call that changes a row; lets a mirror of the rows (e.g.
        :class:`s1kit.budget.tensor.TensorBudget`) notice that the batch changed behind its back."""
        return self._version

    @property
    def capacity(self) -> int:
        return int(self._inner.capacity)

    @property
    def ban_width(self) -> int:
        """Columns ``mask``'s ``ban`` array needs for the rows now in the batch."""
        return int(self._inner.ban_width)

    def insert(self, slot: int, spec: BudgetSpec) -> None:
        """Put a fresh row with ``spec`` into the empty ``slot``.

        An occupied slot raises ``ValueError`` (silently replacing a live row would hide a
        bookkeeping bug): :meth:`remove` it first, or :meth:`reset` it to restart the same spec.
        """
        self._version += 1
        if not isinstance(spec, BudgetSpec):
            raise TypeError(f"spec must be an s1kit.budget.BudgetSpec, got {type(spec).__name__}")
        self._inner.insert(slot, spec._inner)

    def add(self, spec: BudgetSpec, prompt_ids: Sequence[int] | None = None) -> int:
        """Insert into the first free slot (and process the prompt); returns the slot."""
        slot = self._inner.free_slot()
        if slot is None:
            raise ValueError(f"the batch is full ({self.capacity} rows): remove a row or raise capacity")
        self.insert(slot, spec)
        if prompt_ids is not None:
            self.process_prompt(slot, prompt_ids)
        return int(slot)

    def remove(self, slot: int) -> None:
        """Empty the occupied ``slot``; an empty slot raises ``IndexError``."""
        self._version += 1
        self._inner.remove(slot)

    def swap(self, a: int, b: int) -> None:
        self._version += 1
        self._inner.swap(a, b)

    def move_row(self, src: int, dst: int) -> None:
        """Move the row in ``src`` to ``dst`` (replacing it), leaving ``src`` empty."""
        self._version += 1
        self._inner.move_row(src, dst)

    def reset(self, slot: int) -> None:
        self._version += 1
        self._inner.reset(slot)

    def rollback(self, slot: int, k: int) -> None:
        """Undo the last ``k`` steps of ``slot`` exactly (e.g. rejected speculative tokens): the row is
        as if they had never been fed, in every phase. Steps fed after the row ended (done or error)
        count too, and are undone first."""
        self._version += 1
        self._inner.rollback(slot, k)

    def process_prompt(self, slot: int, prompt_ids: Sequence[int] | npt.NDArray[np.integer]) -> None:
        """Feed the prompt so the row's phase follows it (e.g. a template that opens thinking)."""
        self._version += 1
        self._inner.process_prompt(slot, [int(t) for t in prompt_ids])

    def step(self, sampled_B: IntArray, out_B: IntArray, rows: IntArray | None = None) -> None:
        """Override mode, one decode step (see the class docstring)."""
        self._version += 1
        self._inner.step(sampled_B, out_B, rows)

    def mask(
        self,
        force_B: IntArray,
        redirect_B: IntArray,
        ban_BK: npt.NDArray[np.int32],
        rows: IntArray | None = None,
        *,
        stop_finished: bool = False,
    ) -> Stopped:
        """Mask mode, before sampling: per entry a token to force (``force_B[i] >= 0``), or the
        attempts to end thinking (``ban_BK[i]``, padded with -1) and the token that replaces them
        (``redirect_B[i]``; -1: none). The stack bans them, gives their probability to the redirect
        token and tells :meth:`advance` whether an emission of it stands for the end attempt;
        :func:`s1kit.budget.adapters.masking.apply_mask` does both.

        ``stop_finished``: a row that is done or in its error phase gets its spec's first EOS id as
        the token to force (nothing for a spec without EOS ids), so that a stack that ends requests
        on EOS stops it (without it such rows get nothing). Returns how many rows were stopped."""
        return Stopped(*self._inner.mask(force_B, redirect_B, ban_BK, rows, stop_finished=stop_finished))

    def mask_logits(
        self,
        logits_BV: npt.NDArray[np.float32] | npt.NDArray[np.float64],
        logit_rows_N: IntArray,
        flags_N: npt.NDArray[np.uint8],
        rows: IntArray | None = None,
        *,
        stop_finished: bool = True,
        forced_logit: float | None = None,
        temperature_N: npt.NDArray[np.float64] | None = None,
        uniform_N: npt.NDArray[np.float64] | None = None,
    ) -> HostEdit:
        """Mask mode on logits in host memory, in one call: entry ``i`` is slot ``rows[i]`` (default:
        slot ``i``) and edits row ``logit_rows_N[i]`` of ``logits_BV`` (a writeable, C-contiguous
        float32 or float64 numpy array, e.g. ``tensor.numpy()`` of CPU logits) in place, exactly as
        :meth:`mask` followed by :func:`s1kit.budget.adapters.masking.apply_mask` would (the same
        cells and values; the Rust module ``s1kit_core::budget::edit`` documents the rule), and
        writes each entry's redirect flag into ``flags_N`` (uint8, one per entry) for
        :meth:`advance`.

        ``stop_finished`` as in :meth:`mask` (on by default here: the engine adapters stop finished
        rows); ``forced_logit``: ``None`` fills a forced row with ``-inf`` and gives the forced token
        0, a value (e.g. ``masking.FORCED_LOGIT``) sets the forced cell only; ``temperature_N``: per
        entry, the temperature of a sampled row (> 0) or 0 for a greedy one (default: all greedy);
        ``uniform_N``: per entry, a uniform draw in ``[0, 1)`` that decides a sampled row's end
        attempt. Every argument is checked before the first write: on error nothing is edited."""
        done = self._inner.mask_logits(
            logits_BV, logit_rows_N, flags_N, rows, stop_finished=stop_finished,
            forced_logit=forced_logit, temperature=temperature_N, uniform=uniform_N,
        )  # fmt: skip
        return HostEdit(*done)

    def advance(
        self,
        emitted_B: IntArray,
        rows: IntArray | None = None,
        redirected_B: npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Mask mode, after sampling: the tokens the stack emitted, and per entry whether an emission of
        the row's redirect token stands for the model's attempt to end (nonzero; ``None``: for no
        entry), as :func:`s1kit.budget.adapters.masking.apply_mask` returns it. Ignored for other
        tokens."""
        self._version += 1
        if redirected_B is not None and redirected_B.dtype not in (np.int32, np.int64):
            redirected_B = np.ascontiguousarray(redirected_B, np.int64)  # e.g. bool or uint8 flags
        self._inner.advance(emitted_B, rows, redirected_B)

    def tables(self) -> dict[str, npt.NDArray[np.int32]]:
        """The specs of the rows now in the batch as flat int32 tables (layout: the Rust module
        ``s1kit_core::budget::tables``), for steppers outside Rust such as the tensor mirror."""
        return _core.budget_tables(self._inner)

    def export_state(self) -> dict[str, npt.NDArray[np.int32]]:
        """Every slot's full state, one int32 array per field (empty slots: phase EMPTY, zeros)."""
        return _core.export_budget_state(self._inner)

    def import_state(self, state: dict[str, npt.NDArray[np.int32]]) -> None:
        """Write back states of the form :meth:`export_state` returns (e.g. stepped on a GPU).

        Everything is checked first (lengths, empty slots, validity for each row's spec) and nothing
        changes on error. Clears every row's rollback history.
        """
        self._version += 1
        _core.import_budget_state(self._inner, state)

    def accounting(self) -> Accounting:
        """Per-slot counters as numpy arrays (one call, no per-row Python)."""
        return Accounting(**self._inner.accounting())

    def row_state(self, slot: int) -> dict[str, int | bool] | None:
        """One slot's state as a dict (None when empty); for debugging and tests."""
        return self._inner.row_state(slot)
