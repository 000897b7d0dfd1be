"""TensorBudget: override-mode budget forcing as fixed-shape torch ops, capturable in a CUDA graph.

A mirror of the Rust core's per-row transition (``RowState::step``, override mode) written with
tensor ops only: no ``.item()``, no host synchronisation, no data-dependent Python control flow, and
fixed shapes, so one decode step (model, sampling, budget) can be one CUDA graph replay. The Rust
core stays the single source of truth: :meth:`TensorBudget.from_batch` starts from a
:class:`~s1kit.budget.BudgetBatch`'s tables and row states, :meth:`TensorBudget.sync_to` hands the
states back, and the tests check token for token and counter for counter that both agree.

Row operations (insert, remove, swap, prompts) stay on the batch: ``sync_to(batch)``, change the
batch, then ``load(batch)``, which refills the same device buffers (a captured graph stays valid)
as long as the new tables fit the sizes reserved at construction.

Where the parts live: the transition itself, written to be read beside ``row.rs``, in
:mod:`s1kit.budget.tensor_step`; the conversion between the batch's tables and states and the device
layout in :mod:`s1kit.budget.tensor_layout`; the pinned device-to-host copies in
:mod:`s1kit.budget.copyout`. This module holds the buffers and the public API, and re-exports the
names other code imports from it.

Shapes: ``B`` slots, ``F`` state fields, ``P`` per-row parameters, ``S`` specs, ``T`` automaton
states, ``K`` alphabet width, ``Q`` forced sequences, ``L`` their width, ``E`` EOS width, ``V``
vocabulary (newline bitmap), ``R`` ring of emitted tokens between two copy-outs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from s1kit.budget.batch import Accounting, BudgetBatch
from s1kit.budget.copyout import PinnedBuffers, PinnedCopy
from s1kit.budget.tensor_layout import (
    FORCING_ANSWER_PREFIX,
    FORCING_EXTENSION,
    FORCING_NONE,
    RowOffsets,
    TableSizes,
    accounting_from_state,
    device_arrays,
    export_from_state,
)
from s1kit.budget.tensor_step import (
    ANSWER,
    DONE,
    EMPTY,
    ERROR,
    ERROR_TOKEN_OUT_OF_VOCAB,
    KIND_ANSWER_STOP,
    KIND_THINK_END,
    KIND_THINK_START,
    PARAM_FIELDS,
    PRE_THINK,
    STATE_FIELDS,
    THINKING,
    RowStates,
    SpecParams,
    Tables,
    budget_step_,
)

# The default table capacities (one of everything): load() of a larger batch needs a larger reserve.
SMALLEST = TableSizes()


@dataclass(frozen=True)
class Snapshot:
    """Tokens and accounting copied to the host by :meth:`TensorBudget.copy_out`."""

    count: int  # steps taken when the copy was made
    ring_RB: npt.NDArray[np.int64]  # ring_RB[c % R] holds step c's emitted tokens (-1: none)
    accounting: Accounting

    def tokens_since(self, count: int) -> npt.NDArray[np.int64]:
        """``(self.count - count, B)``: the tokens emitted after step ``count``, in order."""
        n, r = self.count - count, self.ring_RB.shape[0]
        if not 0 <= n <= r:
            raise ValueError(
                f"{n} steps were taken since step {count} but the ring holds {r}: copy out at least "
                f"every {r} steps (or raise ring=)"
            )
        return self.ring_RB[np.arange(count, self.count) % r]


class HostCopy(PinnedCopy):
    """A :meth:`TensorBudget.copy_out` in flight."""

    def result(self) -> Snapshot:
        """Wait for the copy (if needed) and read it. Valid until two more copy-outs are started."""
        state_FB, ring_RB, count_1 = self.arrays()
        assert state_FB is not None and ring_RB is not None and count_1 is not None
        i64 = np.int64
        return Snapshot(
            int(count_1[0]),
            ring_RB.astype(i64, copy=False),
            accounting_from_state(state_FB.astype(i64, copy=False)),
        )


class TensorBudget:
    """Device-resident budget-forcing state for the slots of one :class:`BudgetBatch`.

    ``step(tokens_B)`` advances every row in place with tensor ops only (see :func:`budget_step_`),
    so it can be captured in a CUDA graph together with the model's decode step. Buffers are
    allocated once; :meth:`load` refills them for a changed batch. ``compile=True`` wraps the step
    in ``torch.compile`` (fusing its ~70 small ops into a few kernels on CUDA).
    """

    def __init__(
        self,
        capacity: int,
        device: torch.device | str,
        *,
        sizes: TableSizes = SMALLEST,
        ring: int = 64,
        compile: bool = False,
    ) -> None:
        if capacity <= 0 or ring <= 0:
            raise ValueError(f"capacity and ring must be positive, got {capacity} and {ring}")
        self.device = torch.device(device)
        self.capacity, self.sizes = capacity, sizes
        z, dev, i64 = sizes, self.device, torch.int64
        self.state_FB = torch.zeros(len(STATE_FIELDS), capacity, dtype=i64, device=dev)
        self.states.phase.fill_(EMPTY)
        self.states.forcing_seq.fill_(-1)
        self.tables = Tables(
            params_PB=torch.zeros(len(PARAM_FIELDS), capacity, dtype=i64, device=dev),
            alpha_BK=torch.full((capacity, z.alphabet), -1, dtype=i64, device=dev),
            eos_BE=torch.full((capacity, z.eos), -1, dtype=i64, device=dev),
            cols_K=torch.arange(z.alphabet, dtype=i64, device=dev) - z.alphabet,
            next_flat=torch.zeros(z.states * (z.alphabet + 1), dtype=i64, device=dev),
            kinds_T=torch.zeros(z.states, dtype=i64, device=dev),
            overlap_T=torch.zeros(z.states, dtype=i64, device=dev),
            seqs_flat=torch.full((z.seqs * z.seq_width,), -1, dtype=i64, device=dev),
            seq_len_Q=torch.zeros(z.seqs, dtype=i64, device=dev),
            newline_SV=torch.zeros(z.specs, z.vocab, dtype=torch.bool, device=dev),
        )
        self.override_B = torch.full((capacity,), -1, dtype=i64, device=dev)
        self.done_B = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self.ring_RB = torch.full((ring, capacity), -1, dtype=i64, device=dev)
        self.count_1 = torch.zeros(1, dtype=i64, device=dev)
        self._pinned = PinnedBuffers((self.state_FB, self.ring_RB, self.count_1), self.device.type == "cuda")
        self._version = -1
        empty = np.zeros(capacity, np.int64)
        self._rows = RowOffsets(np.zeros(capacity, np.bool_), empty, empty, empty)
        self._step = torch.compile(budget_step_, fullgraph=True, dynamic=False) if compile else budget_step_

    @property
    def states(self) -> RowStates:
        """Named views of :attr:`state_FB`'s rows (the fields of ``RowState``; on the device, no copy)."""
        return RowStates(*self.state_FB.unbind(0))

    @classmethod
    def from_batch(
        cls,
        batch: BudgetBatch,
        device: torch.device | str,
        *,
        reserve: TableSizes = SMALLEST,
        ring: int = 64,
        compile: bool = False,
    ) -> TensorBudget:
        """Device state for ``batch``'s rows, with tables at least as large as ``reserve``."""
        tables = batch.tables()
        tb = cls(
            batch.capacity, device, sizes=TableSizes.of(tables).union(reserve), ring=ring, compile=compile
        )
        tb.load(batch, tables)
        return tb

    def load(self, batch: BudgetBatch, tables: dict[str, npt.NDArray[np.int32]] | None = None) -> None:
        """Refill the device buffers (same tensors: a captured graph stays valid) from ``batch``."""
        if batch.capacity != self.capacity:
            raise ValueError(f"the batch has {batch.capacity} slots, this TensorBudget {self.capacity}")
        tab = batch.tables() if tables is None else tables
        need = TableSizes.of(tab)
        if not self.sizes.fits(need):
            raise ValueError(
                f"the batch's tables ({need}) exceed this TensorBudget's ({self.sizes}): build it with "
                "from_batch(..., reserve=TableSizes(...)) large enough for every batch it will hold"
            )
        arrays = device_arrays(tab, batch.export_state(), self.sizes, self.capacity)
        t = self.tables
        for dst, src in (
            (t.params_PB, arrays.params_PB),
            (t.alpha_BK, arrays.alpha_BK),
            (t.eos_BE, arrays.eos_BE),
            (t.next_flat, arrays.next_TK1.reshape(-1)),
            (t.kinds_T, arrays.kinds_T),
            (t.overlap_T, arrays.overlap_T),
            (t.seqs_flat, arrays.seqs_QL.reshape(-1)),
            (t.seq_len_Q, arrays.seq_len_Q),
            (t.newline_SV, arrays.newline_SV),
            (self.state_FB, arrays.state_FB),
        ):
            dst.copy_(torch.from_numpy(src))
        self._rows = arrays.rows
        self.override_B.fill_(-1)
        phase = self.states.phase
        self.done_B.copy_((phase == DONE) | (phase == ERROR))
        self._version = batch.version

    def step(self, tokens_B: torch.Tensor) -> torch.Tensor:
        """Advance every row by the sampled ``tokens_B`` (int32/int64, on this device), replacing
        them in place with the emitted tokens; returns ``tokens_B``. No host synchronisation."""
        if tokens_B.shape != (self.capacity,) or tokens_B.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"tokens_B must be an int32/int64 tensor of shape ({self.capacity},), "
                f"got {tuple(tokens_B.shape)} {tokens_B.dtype}"
            )
        if tokens_B.device != self.state_FB.device:
            raise ValueError(f"tokens_B is on {tokens_B.device}, the budget state on {self.state_FB.device}")
        self._step(
            self.state_FB, self.tables, tokens_B, self.override_B, self.done_B, self.ring_RB, self.count_1
        )
        return tokens_B

    def mutable_buffers(self) -> list[torch.Tensor]:
        """The buffers :meth:`step` writes (besides its input), e.g. to undo a CUDA-graph warm-up."""
        return [self.state_FB, self.override_B, self.done_B, self.ring_RB, self.count_1]

    def export_state(self) -> dict[str, npt.NDArray[np.int32]]:
        """Every slot's state in the Rust core's export format (synchronises with the device)."""
        return export_from_state(self.state_FB.cpu().numpy(), self._rows)

    def sync_to(self, batch: BudgetBatch) -> None:
        """Hand every row's state back to ``batch`` (the one loaded last; synchronises)."""
        if batch.version != self._version:
            raise ValueError(
                "the batch changed since this TensorBudget loaded it: call sync_to before changing "
                "rows, then load(batch) again"
            )
        batch.import_state(self.export_state())
        self._version = batch.version

    def accounting(self) -> Accounting:
        """Per-slot counters now (synchronises; use :meth:`copy_out` in a decode loop)."""
        return accounting_from_state(self.state_FB.cpu().numpy())

    def copy_out(self) -> HostCopy:
        """Start copying the state, the emitted-token ring and the step count to the host.

        On CUDA the copy is asynchronous (pinned memory, ordered after the work already queued on
        the current stream, an event marks completion); on CPU it is a plain copy. Call it at least
        every ``R`` steps so that no emitted token is overwritten before it is copied.
        """
        return self._pinned.start((self.state_FB, self.ring_RB, self.count_1), HostCopy)


__all__ = [
    "ANSWER",
    "DONE",
    "EMPTY",
    "ERROR",
    "ERROR_TOKEN_OUT_OF_VOCAB",
    "FORCING_ANSWER_PREFIX",
    "FORCING_EXTENSION",
    "FORCING_NONE",
    "KIND_ANSWER_STOP",
    "KIND_THINK_END",
    "KIND_THINK_START",
    "PARAM_FIELDS",
    "PRE_THINK",
    "STATE_FIELDS",
    "THINKING",
    "HostCopy",
    "PinnedBuffers",
    "PinnedCopy",
    "RowStates",
    "Snapshot",
    "SpecParams",
    "TableSizes",
    "Tables",
    "TensorBudget",
    "accounting_from_state",
    "budget_step_",
]
