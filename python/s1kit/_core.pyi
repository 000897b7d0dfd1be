# Hand-written stub of the compiled module s1kit._core (curation items; the lead merges the rest).
# Every call below copies or borrows its inputs, releases the GIL for the work, and is deterministic
# (parallel work is collected in input order). Do not mutate an input array from another thread
# during a call.

from collections.abc import Sequence
from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

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
