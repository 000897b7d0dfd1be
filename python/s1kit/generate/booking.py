"""Booking: what the host does with the tokens a step, a prefill or a run-ahead window produced.

For one step (:meth:`Booking.absorb`, the host loop and every prefill) the budget core first turns the
sampled tokens into the emitted ones (:meth:`Booking.budget_override`: the forced token where a row
forces), the step inputs for the next step are written (``override``, ``counter``, ``pos``), then
:meth:`Booking.book` appends each row's token, streams it to ``on_token`` and finishes the rows it
ends. A run-ahead window (:meth:`Booking.absorb_window`) books its tokens step by step in the same
order, with the budget counters the device recorded after each step; a row stops at its first end and
the tokens it generated after it are discarded. Vectorised over rows: only rows that may finish (or
need stop-string checks) reach Python.

Shape legend: N = max_batch slots, K window steps, F budget state fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from s1kit.budget import Accounting
from s1kit.budget.tensor import accounting_from_state
from s1kit.generate.budget_state import BudgetState
from s1kit.generate.finishing import Decoder, Results, finish_reason, result_for
from s1kit.generate.slots import Slots

OnToken = Callable[[str, int], None]
I64 = npt.NDArray[np.int64]


class Booking:
    """Books emitted tokens into the rows of ``slots`` and finishes the rows that end."""

    def __init__(
        self,
        slots: Slots,
        budget: BudgetState,
        results: Results,
        *,
        eos_token_ids: frozenset[int],
        tokenizer: Decoder,
        max_len: int,
        vocab_size: int,
        on_token: OnToken | None,
    ) -> None:
        self.slots, self.budget, self.results = slots, budget, results
        self.eos_token_ids, self.tokenizer, self.max_len = eos_token_ids, tokenizer, max_len
        self.on_token = on_token
        N = slots.prompt_len_N.shape[0]
        self.out_N = np.full(N, -1, dtype=np.int64)
        self.slots_N = np.arange(N, dtype=np.int64)
        # EOS lookup table over the vocabulary (+1 entry, False, for larger forced ids).
        self.is_eos_V = np.zeros(vocab_size + 1, dtype=bool)
        self.is_eos_V[[t for t in eos_token_ids if 0 <= t < vocab_size]] = True

    def budget_override(self, start: int, sampled: I64) -> I64:
        """(sampled tokens of slots ``start..``) -> per row the forced token, or -1.

        The budget's hook into the host loop and into prefills (both paths): it runs on the host (the
        Rust core); the device applies its result with
        :func:`~s1kit.generate.step.apply_budget_override`. In run-ahead windows the device budget
        steps in the graph instead and this function is not called.
        """
        k = len(sampled)
        out = self.out_N[:k]
        out.fill(-1)
        if self.budget.on_device:
            # Only reached by a prefill of rows without a budget (inserting one hands the device
            # budget back first): nothing to force.
            return out
        if self.budget.rows:
            # The budget core sees every sampled token; slots without a budget answer -1.
            self.budget.step_host(sampled, out, self.slots_N[start : start + k])
        return out

    def absorb(self, start: int, sampled: I64, *, prefill: bool) -> None:
        """Apply the budget override to slots ``[start, start + len(sampled))`` and book the tokens."""
        k = len(sampled)
        sl = slice(start, start + k)
        out = self.budget_override(start, sampled)
        forced = out >= 0
        emitted = np.where(forced, out, sampled)
        h = self.slots.host
        # The device holds the sampled token; feed it unless the host must override it.
        h.override[sl] = emitted if prefill else np.where(forced, out, -1)
        n_tok = h.counter[sl] + 1 if not prefill else np.ones(k, dtype=np.int64)
        h.counter[sl] = n_tok
        h.pos[sl] = self.slots.prompt_len_N[sl] + n_tok - 1
        self.book(np.arange(start, start + k), emitted, sampled, n_tok, self.budget.accounting)

    def absorb_window(self, tokens_KN: I64, states_KFN: I64 | None) -> None:
        """Book a window's tokens (``tokens_KN[s, slot]``: step ``s``'s emitted token, -1 once the
        device froze the row) exactly as :meth:`absorb` books one step's: rows in slot order within a
        step, steps in order; a row stops at its first end and its later tokens are discarded."""
        n = tokens_KN.shape[1]
        alive = np.ones(n, dtype=bool)
        before = self.slots.host.counter[:n].copy()  # tokens each row had before the window
        for s, ids_N in enumerate(tokens_KN):
            live = np.flatnonzero(alive)
            if not len(live):
                return
            ids = ids_N[live]
            if (ids < 0).any():
                raise RuntimeError(
                    "internal error: the device froze a row the host has not finished (slots "
                    f"{live[ids < 0].tolist()}, window step {s}); please report it"
                )

            def acc(s: int = s) -> Accounting | None:  # the budget counters as of step s
                return accounting_from_state(states_KFN[s]) if states_KFN is not None else None

            alive[self.book(live, ids, ids, before[live] + s + 1, acc)] = False

    def book(
        self,
        slots: I64,
        emitted: I64,
        sampled: I64,
        n_tok: I64,
        accounting: Callable[[], Accounting | None],
    ) -> I64:
        """One step's booking for rows ``slots``: append and stream each row's emitted token, then finish
        the rows it ends. ``n_tok``: each row's token count with it; ``sampled``: what the device
        sampled (checked against the spec's vocabulary); ``accounting``: the budget counters as of this
        step, asked for only if a budget row may finish. Returns the slots that finished."""
        s = self.slots
        ids = emitted.tolist()
        rows = [s.rows[j] for j in slots.tolist()]
        for row, t in zip(rows, ids, strict=True):
            row.tokens.append(t)
        if self.on_token is not None:
            for row, t in zip(rows, ids, strict=True):
                self.on_token(row.request_id, t)
        maybe = (
            (n_tok >= s.limit_N[slots])
            | self.is_eos_V[np.minimum(emitted, len(self.is_eos_V) - 1)]
            | (sampled >= s.vocab_N[slots])
            | (sampled < 0)
            | s.slow_N[slots]
        )
        candidates = np.flatnonzero(maybe)
        finished: list[int] = []
        if not len(candidates):
            return np.array(finished, dtype=np.int64)
        acc = accounting() if self.budget.rows else None
        now = time.perf_counter()
        for j in candidates.tolist():
            slot, row = int(slots[j]), rows[j]
            row.finish = finish_reason(
                row,
                ids[j],
                slot,
                acc,
                eos_token_ids=self.eos_token_ids,
                tokenizer=self.tokenizer,
                max_len=self.max_len,
            )
            if row.finish is not None:
                self.results.add(row.index, result_for(row, slot, acc, now, self.tokenizer))
                finished.append(slot)
        return np.array(finished, dtype=np.int64)
