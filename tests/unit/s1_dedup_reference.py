"""s1-style pure-Python reference for normalisation, n-grams, decontamination and Jaccard.

Written to be obviously correct, after s1's ``data/decontaminate_util.py``: normalise with
``" ".join(text.lower().split())``, cut word n-grams, look them up in a dict of evaluation n-grams.
"""

from __future__ import annotations

from collections import defaultdict


def normalize_string(text: str) -> str:
    return " ".join(text.lower().split())


def word_ngrams(text: str, n: int) -> list[str]:
    words = normalize_string(text).split()
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def build_ngram_lookup(items: list[str], n: int) -> dict[str, set[int]]:
    lookup: dict[str, set[int]] = defaultdict(set)
    for i, item in enumerate(items):
        for g in word_ngrams(item, n):
            lookup[g].add(i)
    return lookup


def contaminated(docs: list[str], items: list[str], n: int) -> dict[tuple[int, int], int]:
    """``{(doc, item): number of the doc's distinct n-grams found in the item}``."""
    lookup = build_ngram_lookup(items, n)
    out: dict[tuple[int, int], int] = defaultdict(int)
    for d, doc in enumerate(docs):
        for g in set(word_ngrams(doc, n)):
            for item in lookup.get(g, ()):
                out[(d, item)] += 1
    return dict(out)


def jaccard(a: str, b: str, n: int) -> float:
    sa, sb = set(word_ngrams(a, n)), set(word_ngrams(b, n))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
