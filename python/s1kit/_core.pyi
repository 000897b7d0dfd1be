"""Type stubs for ``s1kit._core``, the compiled Rust extension (checked by ``mypy.stubtest``)."""

from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

PHASE_PRE_THINK: int
PHASE_THINKING: int
PHASE_ANSWER: int
PHASE_DONE: int
PHASE_ERROR: int
PHASE_EMPTY: int

@final
class BudgetSpec:
    """A validated, compiled budget spec; immutable, shared between rows.

    Raises ``ValueError`` naming the field and the fix when the spec is inconsistent (e.g. min above
    max, an empty delimiter, an id outside the vocabulary).
    """

    def __new__(
        cls,
        vocab_size: int,
        think_end: list[list[int]],
        *,
        think_start: list[list[int]] = ...,
        eos: list[int] = ...,
        answer_prefix: list[int] = ...,
        extensions: list[list[int]] = ...,
        max_thinking_tokens: int | None = None,
        min_thinking_tokens: int = 0,
        num_extensions: int = 0,
        grace_tokens: int = 0,
        newline_tokens: list[int] = ...,
        max_answer_tokens: int | None = None,
        answer_stop: list[list[int]] = ...,
    ) -> BudgetSpec: ...
    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary; every id and sampled token must be below it."""
    @property
    def think_start(self) -> list[list[int]]:
        """Spellings that open the thinking span (empty: rows start thinking)."""
    @property
    def think_end(self) -> list[list[int]]:
        """Spellings that close the thinking span."""
    @property
    def eos(self) -> list[int]:
        """End-of-sequence ids."""
    @property
    def answer_prefix(self) -> list[int]:
        """Ids forced at the cap (end delimiter + answer prefix)."""
    @property
    def extensions(self) -> list[list[int]]:
        """Ids forced in place of an early end of thinking, cycled."""
    @property
    def max_thinking_tokens(self) -> int | None:
        """Thinking cap, or None."""
    @property
    def min_thinking_tokens(self) -> int:
        """An end of thinking before this many tokens is suppressed."""
    @property
    def num_extensions(self) -> int:
        """The first this-many end attempts are suppressed."""
    @property
    def grace_tokens(self) -> int:
        """Tokens allowed after the cap to finish the current line."""
    @property
    def newline_tokens(self) -> list[int]:
        """Ids of tokens that end a line (used with grace tokens)."""
    @property
    def max_answer_tokens(self) -> int | None:
        """Answer cap, or None."""
    @property
    def answer_stop(self) -> list[list[int]]:
        """Spellings that end the answer."""
    @property
    def ban_width(self) -> int:
        """The most ids a mask step bans for a row of this spec."""

@final
class BudgetBatch:
    """Slot-indexed budget-forcing state; one call per decode step for the whole batch.

    Per-step calls take one-dimensional int32/int64 numpy arrays (C-contiguous) and write into the
    caller's output arrays; they raise only for misuse (shape, dtype, slot), never for what a row
    generated: such a row moves to the error phase. Inputs must not be mutated during a call.
    """

    def __new__(cls, capacity: int, *, max_rollback: int = 32) -> BudgetBatch: ...
    @property
    def capacity(self) -> int:
        """Number of slots."""
    @property
    def max_rollback(self) -> int:
        """How many tokens per row ``rollback`` can undo."""
    @property
    def ban_width(self) -> int:
        """Columns the ``ban`` array of ``mask`` needs for the current rows."""
    def insert(self, slot: int, spec: BudgetSpec) -> None:
        """Put a fresh row with ``spec`` in ``slot``."""
    def free_slot(self) -> int | None:
        """The first empty slot, or None."""
    def remove(self, slot: int) -> None:
        """Empty ``slot``."""
    def swap(self, a: int, b: int) -> None:
        """Exchange two slots."""
    def move_row(self, src: int, dst: int) -> None:
        """Move a row from ``src`` to ``dst``, leaving ``src`` empty."""
    def reset(self, slot: int) -> None:
        """Return a row to its initial state."""
    def rollback(self, slot: int, k: int) -> None:
        """Undo the last ``k`` tokens of ``slot`` exactly."""
    def process_prompt(self, slot: int, prompt: list[int]) -> None:
        """Feed prompt tokens: derives the phase, counts nothing."""
    def step(
        self, sampled: npt.NDArray[Any], out: npt.NDArray[Any], rows: npt.NDArray[Any] | None = None
    ) -> None:
        """Override mode: ``out[i]`` = token replacing ``sampled[i]``, or -1."""
    def mask(
        self,
        force: npt.NDArray[Any],
        redirect: npt.NDArray[Any],
        ban: npt.NDArray[np.int32],
        rows: npt.NDArray[Any] | None = None,
    ) -> None:
        """Mask mode, before sampling: forced token, redirect target (or -1) and banned ids (-1 padded)."""
    def advance(self, emitted: npt.NDArray[Any], rows: npt.NDArray[Any] | None = None) -> None:
        """Mask mode, after sampling: the tokens the stack emitted."""
    def accounting(self) -> dict[str, npt.NDArray[Any]]:
        """Per-slot phase, error, thinking/answer/forced tokens, extensions used, capped."""
    def row_state(self, slot: int) -> dict[str, Any] | None:
        """One slot's state as a dict, or None when empty."""

def budget_tables(batch: BudgetBatch) -> dict[str, npt.NDArray[np.int32]]:
    """The specs of the batch's rows as flat int32 tables, for steppers outside Rust.

    Keys: per slot ``row_spec`` (-1: empty); per spec ``vocab_size``, ``max_thinking_tokens`` and
    ``max_answer_tokens`` (-1: no cap), ``min_thinking_tokens``, ``num_extensions``, ``grace_tokens``,
    ``initial_phase``, ``eos_to_answer``, ``state_base``, ``num_states``, ``ext_seq_base``,
    ``num_ext_seqs``, ``answer_seq`` (-1: none); the automaton ``alphabet`` (S, K), ``next``
    (T, K + 1; the last column for any id outside the alphabet) and ``kinds`` (T); the forced
    sequences ``seqs`` (Q, L) and ``seq_len`` (Q); ``eos`` (S, E) and ``newline`` (S, N). 2-D tables are
    padded with -1. The layout is documented in the Rust module ``s1kit_core::budget::tables``.
    """

def export_budget_state(batch: BudgetBatch) -> dict[str, npt.NDArray[np.int32]]:
    """Every slot's full state, one int32 array per field: ``phase``, ``error``, ``matcher_state``
    (local to the row's spec), ``thinking_tokens``, ``answer_tokens``, ``forced_tokens``,
    ``extensions_used``, ``capped``, ``grace_used``, ``line_closed``, ``forcing_kind`` (0 none,
    1 extension, 2 answer prefix), ``forcing_index``, ``forcing_pos``. Empty slots: phase 5, zeros."""

def import_budget_state(batch: BudgetBatch, state: dict[str, npt.NDArray[np.int32]]) -> None:
    """Write states of the form ``export_budget_state`` returns back into the batch.

    Checks everything first and changes nothing on error (``ValueError`` naming the slot and field;
    ``KeyError`` for a missing field; ``TypeError`` for a non-int32 array). Clears the rows' rollback
    history.
    """
