"""Scheduling: which waiting request gets which slot, and how finished rows leave (continuous batching).

:meth:`Scheduler.admit` takes requests from the queue, in order, into the free slots after the
active rows, as many as fit the free slots and :data:`PREFILL_TOKENS` padded prompt tokens, and
inserts their budget rows. :meth:`Scheduler.compact` runs after every prefill, step and window: each
finished row's slot is filled by the last active row (its K/V, its budget row, its sampling
parameters and per-slot facts), so rows stay in ``[0, n)`` and the next step runs on the smallest
batch bucket holding ``n`` rows. Both change budget rows, so both first make the host batch the budget
truth (:meth:`~s1kit.generate.budget_state.BudgetState.to_host`) where they touch one.
"""

from __future__ import annotations

from collections import deque

from s1kit.generate.budget_state import BudgetState
from s1kit.generate.cache import StaticKVCache
from s1kit.generate.slots import Row, Slots

# Upper bound on padded tokens per prefill forward; larger admissions are split.
PREFILL_TOKENS = 8192


class Scheduler:
    """The waiting queue of one ``generate`` call and the slot changes between steps."""

    def __init__(
        self, rows: list[Row], slots: Slots, budget: BudgetState, cache: StaticKVCache, max_len: int
    ) -> None:
        self.pending = deque(rows)
        self.slots, self.budget, self.cache, self.max_len = slots, budget, cache, max_len
        self.max_batch = cache.max_batch

    def busy(self) -> bool:
        """Whether any request waits or runs."""
        return bool(self.pending or self.slots.rows)

    def can_admit(self) -> bool:
        """Whether a request waits and a slot is free."""
        return bool(self.pending) and len(self.slots) < self.max_batch

    def admit(self) -> tuple[int, list[Row]]:
        """Place the next requests in free slots; returns the first slot and the rows, to prefill."""
        free = self.max_batch - len(self.slots)
        batch: list[Row] = []
        longest = 0
        while self.pending and len(batch) < free:
            width = max(longest, len(self.pending[0].prompt))
            if batch and width * (len(batch) + 1) > PREFILL_TOKENS:
                break
            batch.append(self.pending.popleft())
            longest = width
        start = len(self.slots)
        for row in batch:
            slot = self.slots.place(row, self.max_len)
            spec = row.request.budget
            if spec is not None:
                self.budget.to_host()
                self.budget.insert(slot, spec, row.prompt)
        return start, batch

    def _remove_budget(self, slot: int) -> None:
        if self.slots.rows[slot].has_budget:
            self.budget.to_host()
            self.budget.remove(slot)

    def compact(self) -> None:
        """Drop finished rows; fill each hole with the last active row (K/V, budget, parameters)."""
        rows = self.slots.rows
        i = 0
        while i < len(rows):
            if rows[i].finish is None:
                i += 1
                continue
            self._remove_budget(i)
            last = len(rows) - 1
            while last > i and rows[last].finish is not None:
                self._remove_budget(last)
                rows.pop()
                last -= 1
            if last == i:
                rows.pop()
                break
            row = rows.pop()
            rows[i] = row
            length = len(row.prompt) + len(row.tokens) - 1  # positions holding K/V
            self.cache.move_row(last, i, length)
            if row.has_budget:
                self.budget.to_host()
                self.budget.move_row(last, i)
            self.slots.move(last, i)
            # The device's sampled token in slot i belonged to the finished row.
            self.slots.host.override[i] = row.tokens[-1]
            i += 1
