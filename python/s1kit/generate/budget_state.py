"""Who holds the budget truth: the Rust batch on the host or its tensor mirror on the device.

The budget-forcing state of a ``generate`` call's rows lives in exactly one place at a time, and
:class:`BudgetState` says which (:attr:`BudgetState.where`):

- ``"host"``: the Rust :class:`~s1kit.budget.BudgetBatch`. Row changes (insert, remove, move) and the
  host loop's per-step :meth:`BudgetState.step_host` happen here.
- ``"device"``: the :class:`~s1kit.budget.tensor.TensorBudget` loaded from that batch, stepped inside
  the decode step's graph by run-ahead windows. The batch is stale meanwhile.

Transfers are explicit and named: :meth:`BudgetState.to_device` loads the batch into the mirror
(reusing its buffers, and so the captured graphs, when the tables fit), :meth:`BudgetState.to_host`
hands the mirror's states back to the batch. Row changes refuse to run while the truth is on the
device instead of copying it back behind the caller's back. Reading the counters
(:meth:`BudgetState.accounting`) reads wherever the truth is and moves nothing.

The device mirror outlives one ``generate`` call (its graphs are worth keeping); the batch is new
for each call (:meth:`BudgetState.start_run`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from s1kit.budget import Accounting, BudgetBatch, BudgetSpec
from s1kit.budget.tensor import TableSizes, TensorBudget
from s1kit.generate.step import DecodeStep

# Device budget tables are sized for at least this much, so new specs rarely force a re-capture.
TENSOR_BUDGET_RESERVE = TableSizes(specs=4, states=64, alphabet=32, seqs=16, seq_width=32, eos=4)


class BudgetState:
    """The budget rows of the slots ``[0, max_batch)``, on the host or on the device (see the module)."""

    def __init__(self, step: DecodeStep, vocab_size: int) -> None:
        self.step = step
        self.capacity = step.cache.max_batch
        self.vocab_size = vocab_size
        self.batch = BudgetBatch(self.capacity)
        self.where: Literal["host", "device"] = "host"
        self.rows = 0  # slots holding a budget row
        self.device_budget: TensorBudget | None = None  # the mirror, kept across calls
        self._device_compiled = False

    def start_run(self) -> None:
        """An empty batch on the host, for a new ``generate`` call."""
        self.batch = BudgetBatch(self.capacity)
        self.where = "host"
        self.rows = 0

    # ---- transfers -----------------------------------------------------------------------------

    def to_device(self, compile: bool) -> None:
        """Make the device mirror the truth (no-op if it is): load the batch into it, reusing its buffers
        and graphs when the tables fit, else building a larger one and handing it to the decode step."""
        if self.where == "device":
            return
        tb, tables = self.device_budget, self.batch.tables()
        need = TableSizes.of(tables)
        if tb is not None and tb.sizes.fits(need) and self._device_compiled == compile:
            tb.load(self.batch, tables)
        else:
            reserve = TENSOR_BUDGET_RESERVE.union(TableSizes(vocab=self.vocab_size))
            if tb is not None:
                reserve = reserve.union(tb.sizes)
            device = self.step.device
            tb = TensorBudget.from_batch(self.batch, device, reserve=reserve, compile=compile)
            self.device_budget = tb
            self._device_compiled = compile
            self.step.set_budget(tb)
        self.where = "device"

    def to_host(self) -> None:
        """Make the Rust batch the truth (no-op if it is): the device states are copied back into it
        (this waits for the device)."""
        if self.where == "host":
            return
        assert self.device_budget is not None
        self.device_budget.sync_to(self.batch)
        self.where = "host"

    # ---- row changes and the host step (host only) --------------------------------------------

    def _on_host(self, what: str) -> BudgetBatch:
        if self.where != "host":
            raise RuntimeError(
                f"internal error: {what} while the budget truth is on the device; call to_host first"
            )
        return self.batch

    def insert(self, slot: int, spec: BudgetSpec, prompt: list[int]) -> None:
        """A new budget row in ``slot`` that has read ``prompt``."""
        batch = self._on_host("insert")
        batch.insert(slot, spec)
        batch.process_prompt(slot, prompt)
        self.rows += 1

    def remove(self, slot: int) -> None:
        self._on_host("remove").remove(slot)
        self.rows -= 1

    def move_row(self, src: int, dst: int) -> None:
        self._on_host("move_row").move_row(src, dst)

    def step_host(
        self, sampled: npt.NDArray[np.int64], out: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
    ) -> None:
        """The Rust core's override-mode step for slots ``rows``: ``out`` receives the forced token or -1."""
        self._on_host("step_host").step(sampled, out, rows=rows)

    # ---- reads ---------------------------------------------------------------------------------

    def accounting(self) -> Accounting:
        """Per-slot counters, read where the truth is (from the device: waits for it; moves nothing)."""
        if self.where == "device":
            assert self.device_budget is not None
            return self.device_budget.accounting()
        return self.batch.accounting()

    @property
    def on_device(self) -> bool:
        return self.where == "device"


__all__ = ["TENSOR_BUDGET_RESERVE", "BudgetState"]
