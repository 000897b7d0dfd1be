"""Normalisation and n-grams agree with the s1-style Python reference, Unicode whitespace included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s1kit import _core
from tests.unit import s1_dedup_reference as ref

# Every character Python's str.split() treats as whitespace, and look-alikes it does not.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
NOT_WHITESPACE = "\u200b\ufeff\u180e"
LETTERS = "abcXYZ09.,$\\{}ÀÄéß" + "ΣσςΑ" + "İı" + "数学题" + "ǅ"
ALPHABET = st.sampled_from(list(PY_WHITESPACE + NOT_WHITESPACE + LETTERS))
TEXT = st.text(alphabet=ALPHABET, max_size=80)


def test_whitespace_set_is_pythons() -> None:
    assert all(c.isspace() for c in PY_WHITESPACE)
    assert not any(c.isspace() for c in NOT_WHITESPACE)
    assert sum(chr(cp).isspace() for cp in range(0x110000)) == len(PY_WHITESPACE)
    for c in PY_WHITESPACE:
        assert _core.normalize_text(f"a{c}b") == "a b", repr(c)
    for c in NOT_WHITESPACE:
        assert _core.normalize_text(f"a{c}b") == f"a{c}b", repr(c)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_normalize_matches_reference(text: str) -> None:
    assert _core.normalize_text(text) == ref.normalize_string(text)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(min_value=1, max_value=9))
def test_word_ngrams_match_reference(text: str, n: int) -> None:
    words = ref.normalize_string(text).split()
    got = _core.word_ngrams(text, n)
    if len(words) >= n:
        assert got == ref.word_ngrams(text, n)
    elif words:  # shorter than n words: the whole text is one shingle
        assert got == [" ".join(words)]
    else:
        assert got == []


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(min_value=1, max_value=9))
def test_hashes_are_the_hashes_of_the_ngrams(text: str, n: int) -> None:
    hashes = _core.ngram_hashes(text, n)
    assert hashes.dtype == np.uint64
    grams = _core.word_ngrams(text, n)
    assert hashes.tolist() == [int(_core.ngram_hashes(g, n)[0]) for g in grams]


def test_short_texts_never_share_one_signature() -> None:
    # Texts shorter than n: one shingle each, equal only for equal normalised text; empty: none.
    a, b, c = (_core.ngram_hashes(t, 8).tolist() for t in ("x = 1", "X  =\u30001", "x = 2"))
    assert len(a) == 1 and a == b and a != c
    assert _core.ngram_hashes(" \u2003 ", 8).size == 0
    # A short text's shingle is never a window of a longer text containing the same words.
    long_text = "x = 1 and then some more words follow here"
    assert a[0] not in _core.ngram_hashes(long_text, 8).tolist()
    sigs, has = _core.minhash_signatures(["", " ", "x = 1", "x = 2"], 8, 64, 0)
    assert has.tolist() == [False, False, True, True]
    assert not np.array_equal(sigs[2], sigs[3])


def test_bad_n_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        _core.word_ngrams("a b", 0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        _core.NgramIndex(["a b"], 0)
