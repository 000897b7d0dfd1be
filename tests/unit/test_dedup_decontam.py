"""8-gram decontamination finds every planted contamination and nothing else, exactly as the s1-style
reference does, and exact dedup groups exactly the texts equal after normalisation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from s1kit import _core
from tests.unit import s1_dedup_reference as ref

WS = [" ", "  ", "\t", "\n", "\u3000", "\xa0", "\x1c"]


def _words(rng: random.Random, vocab: list[str], k: int) -> list[str]:
    return [rng.choice(vocab) for _ in range(k)]


def _join(rng: random.Random, words: list[str]) -> str:
    return "".join(w + rng.choice(WS) for w in words)


def _corpus(seed: int) -> tuple[list[str], list[str], dict[int, int]]:
    """Evaluation items, pool docs, and ``{doc: item}`` for the planted contaminations."""
    rng = random.Random(seed)
    eval_vocab = [f"e{i}" for i in range(2000)]
    pool_vocab = [f"p{i}" for i in range(2000)]  # disjoint: unplanted docs cannot match by chance
    items = [" ".join(_words(rng, eval_vocab, rng.randint(8, 60))) for _ in range(300)]
    docs, planted = [], {}
    for d in range(1500):
        words = _words(rng, pool_vocab, rng.randint(0, 90))
        if d % 7 == 0:
            item = rng.randrange(len(items))
            src = items[item].split()
            s = rng.randint(0, len(src) - 8)
            window = [w.upper() if rng.random() < 0.5 else w for w in src[s : s + 8]]
            at = rng.randint(0, len(words))
            words = words[:at] + window + words[at:]
            planted[d] = item
        docs.append(_join(rng, words))
    return items, docs, planted


@pytest.mark.parametrize("seed", [0, 1])
def test_finds_every_planted_contamination_and_no_false_hit(seed: int) -> None:
    items, docs, planted = _corpus(seed)
    index = _core.NgramIndex(items, 8)
    assert index.num_items == len(items)
    doc, item, shared = index.decontaminate(docs)
    got = {(int(d), int(i)): int(s) for d, i, s in zip(doc, item, shared, strict=True)}
    assert got == ref.contaminated(docs, items, 8)
    assert {d for d, _ in got} == set(planted)
    for d, i in planted.items():
        assert got[(d, i)] >= 1
    assert np.all(np.diff(doc) >= 0), "sorted by document"


def test_min_shared_and_short_texts() -> None:
    items = ["one two three four five six seven eight nine ten", "tiny item"]
    index = _core.NgramIndex(items, 8)
    docs = ["ONE two three four five six seven eight nine ten", "Tiny   ITEM", "tiny", "two three four five"]
    doc, item, shared = index.decontaminate(docs, min_shared=2)
    assert doc.tolist() == [0] and shared.tolist() == [3]
    doc, item, _ = index.decontaminate(docs)
    # The short doc matches the short item it equals after normalisation, and nothing else.
    assert list(zip(doc.tolist(), item.tolist(), strict=True)) == [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="min_shared"):
        index.decontaminate(docs, min_shared=0)
    with pytest.raises(TypeError):
        _core.NgramIndex("not a list of str", 8)


def test_decontaminate_is_deterministic() -> None:
    items, docs, _ = _corpus(3)
    a = _core.NgramIndex(items, 8).decontaminate(docs)
    b = _core.NgramIndex(list(items), 8).decontaminate(list(docs))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_exact_duplicates_match_reference() -> None:
    rng = random.Random(5)
    base = [" ".join(_words(rng, ["a", "B", "c", "dd"], rng.randint(0, 4))) for _ in range(200)]
    texts = [_join(rng, t.split()) if rng.random() < 0.5 else t.upper() for t in base]
    first: dict[str, int] = {}
    expect = [first.setdefault(ref.normalize_string(t), i) for i, t in enumerate(texts)]
    assert _core.exact_duplicates(texts).tolist() == expect
