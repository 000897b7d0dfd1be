"""Type stubs for ``s1kit._core``, the compiled Rust extension (checked by ``mypy.stubtest``)."""

from collections.abc import Sequence
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
    Every output array is checked before anything is written: a read-only, non-contiguous or
    wrongly shaped one raises ``ValueError``, a wrong dtype ``TypeError``, each naming the argument.
    A negative or oversized slot/count raises ``ValueError`` naming the argument; a slot outside the
    batch ``ValueError``; an operation on an empty slot ``IndexError``. No call panics.
    """

    def __new__(cls, capacity: int, *, max_rollback: int = 32) -> BudgetBatch:
        """``capacity`` in 1..2**24 and ``max_rollback`` <= 2**16, else ``ValueError`` (a size the
        allocator cannot serve is a ``ValueError`` too, never an abort)."""
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
        """Put a fresh row with ``spec`` in the empty ``slot``; an occupied slot raises ``ValueError``
        (remove the row first, or ``reset`` it)."""
    def free_slot(self) -> int | None:
        """The first empty slot, or None."""
    def remove(self, slot: int) -> None:
        """Empty the occupied ``slot``; an empty slot raises ``IndexError``."""
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
        *,
        stop_finished: bool = False,
    ) -> tuple[int, int]:
        """Mask mode, before sampling: forced token, or the redirect token (or -1) that replaces the
        attempts to end, which are the banned ids (-1 padded) whose probability it receives. With
        ``stop_finished``, done and error rows get their first EOS id forced; returns how many rows
        were stopped, ``(done, error)``."""
    def mask_logits(
        self,
        logits: npt.NDArray[Any],
        logit_rows: npt.NDArray[Any],
        flags: npt.NDArray[np.uint8],
        rows: npt.NDArray[Any] | None = None,
        *,
        stop_finished: bool = True,
        forced_logit: float | None = None,
        temperature: npt.NDArray[np.float64] | None = None,
        uniform: npt.NDArray[np.float64] | None = None,
    ) -> tuple[int, int, int, int, int]:
        """Mask mode applied in place to float32/float64 host logits (entry ``i``: slot ``rows[i]``,
        logits row ``logit_rows[i]``), redirect flags written to ``flags``; returns ``(forced,
        redirected, flagged, stopped_done, stopped_error)`` entry counts. Nothing is edited on error."""
    def advance(
        self,
        emitted: npt.NDArray[Any],
        rows: npt.NDArray[Any] | None = None,
        redirected: npt.NDArray[Any] | None = None,
    ) -> None:
        """Mask mode, after sampling: the tokens the stack emitted and, per entry, whether an emission of
        its redirect token stands for the end attempt (nonzero) or is the model's own (0; None: all 0)."""
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
    (T, K + 1; the last column for any id outside the alphabet), ``kinds`` (T) and ``answer_overlap``
    (T: where forcing the answer prefix starts in that state); the forced
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

# --- curation: dedup and decontamination. Every call copies or borrows its inputs, releases the GIL,
# and is deterministic (parallel work is collected in input order).

def normalize_text(text: str) -> str:
    """``" ".join(text.lower().split())`` exactly as Python computes it (Python's whitespace set,
    including U+001C..U+001F, which Rust's ``char::is_whitespace`` lacks)."""

def word_ngrams(text: str, n: int = 8) -> list[str]:
    """The word n-grams of the normalised text as strings. A text of ``1 <= k < n`` words yields one
    shingle (all its words); a text without words yields none. For ``k >= n`` this equals s1's
    ``word_ngrams``. Raises ``ValueError`` for ``n < 1``."""

def ngram_hashes(text: str, n: int = 8) -> npt.NDArray[np.uint64]:
    """64-bit hashes of the shingles :func:`word_ngrams` returns, in the same order. The hash includes
    the word count, so a short text's single shingle never equals a window of a longer text."""

@final
class NgramIndex:
    """Every n-gram of a list of evaluation items, for 8-gram decontamination (built in parallel)."""

    def __new__(cls, items: Sequence[str], n: int = 8) -> NgramIndex:
        """Index ``items`` (a list of str) by their word n-gram shingles."""
    @property
    def n(self) -> int:
        """Words per n-gram."""
    @property
    def num_items(self) -> int:
        """Number of indexed items."""
    @property
    def num_ngrams(self) -> int:
        """Number of distinct n-grams indexed."""
    def decontaminate(
        self, docs: Sequence[str], min_shared: int = 1
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(doc, item, shared)``: every (document, indexed item) pair sharing at least ``min_shared``
        distinct n-grams, sorted by document then item; ``shared`` counts the document's distinct
        n-grams found in the item."""

def exact_duplicates(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """For each text, the index of the first text equal to it after normalisation (itself if first).
    Exact: whole normalised strings are compared."""

def minhash_signatures(
    texts: Sequence[str], n: int = 8, num_perm: int = 128, seed: int = 0
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """``(signatures, has_signature)``: seeded MinHash signatures ``(len(texts), num_perm)`` of each
    text's n-gram shingle set (32-bit values from multiply-add-shift permutations, stored as uint64;
    the fraction of equal positions estimates Jaccard similarity), and whether the text has one (texts without words have none; their row
    is all ``2**64 - 1`` and never takes part in LSH)."""

def lsh_candidates(
    signatures: npt.NDArray[np.uint64],
    has_signature: npt.NDArray[np.bool_],
    bands: int = 18,
    rows: int = 7,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(i, j)`` with ``i < j``, sorted and distinct: rows whose signatures agree on at least one band
    of ``rows`` positions. ``bands * rows`` must not exceed the signature width. Arrays must be
    C-contiguous."""

def near_duplicates(
    texts: Sequence[str],
    n: int = 8,
    num_perm: int = 128,
    bands: int = 18,
    rows: int = 7,
    threshold: float = 0.8,
    seed: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(i, j, jaccard)``: MinHash-LSH candidate pairs whose exact Jaccard similarity of n-gram sets is
    at least ``threshold``, sorted by ``(i, j)``. The default 18 x 7 bands find a pair at Jaccard 0.8
    with probability 0.985; verification removes every false positive."""

def clusters(
    num_rows: int,
    i: npt.NDArray[np.int64],
    j: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(root, keeper)`` per row from undirected pairs ``(i[k], j[k])``: ``root`` is the smallest row
    of the row's cluster; ``keeper`` is the kept row of that cluster: the highest ``scores`` (ties go to
    the earlier row), or without scores the first row in input order. NaN scores raise ``ValueError``."""

def cosine_pairs(
    embeddings: npt.NDArray[np.float32], threshold: float, block: int = 2048
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(i, j, cosine)`` for every pair ``i < j`` with cosine similarity ``>= threshold``, exact, by
    blocked matrix products over ``block``-row tiles (memory: one copy of the input plus one tile per
    thread). ``embeddings`` is a C-contiguous float32 ``(N, D)`` matrix; zero rows never pair;
    non-finite values raise ``ValueError``."""
