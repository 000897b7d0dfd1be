"""MinHash estimates vs exact Jaccard, LSH recall/precision on planted near-duplicates, union-find
clusters and keepers, determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest

from s1kit import _core
from tests.unit import s1_dedup_reference as ref


def _doc(rng: random.Random, k: int = 90) -> list[str]:
    return [f"w{rng.randrange(50_000)}" for _ in range(k)]


def _mutate(rng: random.Random, words: list[str], edits: int) -> list[str]:
    out = list(words)
    for _ in range(edits):
        out[rng.randrange(len(out))] = f"x{rng.randrange(10**9)}"
    return out


def test_minhash_estimates_within_expected_error() -> None:
    rng = random.Random(0)
    p = 256
    pairs = []
    for _ in range(150):
        a = _doc(rng)
        pairs.append((" ".join(a), " ".join(_mutate(rng, a, rng.randint(0, 12)))))
    texts = [t for pair in pairs for t in pair]
    sigs, has = _core.minhash_signatures(texts, 8, p, 42)
    assert sigs.shape == (len(texts), p) and sigs.dtype == np.uint64 and has.all()
    errs, zs = [], []
    for k, (a, b) in enumerate(pairs):
        j = ref.jaccard(a, b, 8)
        est = float(np.mean(sigs[2 * k] == sigs[2 * k + 1]))
        se = max((j * (1 - j) / p) ** 0.5, 1 / p)
        errs.append(est - j)
        zs.append(abs(est - j) / se)
    assert max(zs) < 5.0, "no estimate beyond 5 standard errors"
    assert abs(float(np.mean(errs))) < 0.01, "unbiased"
    assert float(np.mean(np.array(zs) < 2.0)) > 0.9, "about 95% within 2 standard errors"


def _planted(seed: int) -> tuple[list[str], set[tuple[int, int]]]:
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(400):
        base = _doc(rng)
        texts.append(" ".join(base))
        for _ in range(rng.randint(0, 2)):
            texts.append(" ".join(_mutate(rng, base, rng.randint(0, 6))))
    rng.shuffle(texts)
    truth = set()
    buckets: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for g in set(ref.word_ngrams(t, 8)):
            buckets.setdefault(g, []).append(i)
    cands = {(a, b) for v in buckets.values() for x, a in enumerate(v) for b in v[x + 1 :]}
    for a, b in cands:
        if ref.jaccard(texts[a], texts[b], 8) >= 0.8:
            truth.add((a, b))
    return texts, truth


def test_lsh_recall_and_precision_on_planted_near_duplicates() -> None:
    texts, truth = _planted(1)
    assert len(truth) > 100
    i, j, jac = _core.near_duplicates(texts, threshold=0.8)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(len(found), 1)
    assert precision == 1.0, "every reported pair is verified by exact Jaccard"
    assert recall >= 0.97
    for a, b, s in zip(i.tolist(), j.tolist(), jac.tolist(), strict=True):
        assert s == pytest.approx(ref.jaccard(texts[a], texts[b], 8))
    # The raw LSH candidates contain every found pair.
    sigs, has = _core.minhash_signatures(texts)
    ci, cj = _core.lsh_candidates(sigs, has, 18, 7)
    assert found <= set(zip(ci.tolist(), cj.tolist(), strict=True))


def test_near_duplicates_deterministic_and_seeded() -> None:
    texts, _ = _planted(2)
    a = _core.near_duplicates(texts, seed=7)
    b = _core.near_duplicates(list(texts), seed=7)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    s1, _ = _core.minhash_signatures(texts[:5], seed=1)
    s2, _ = _core.minhash_signatures(texts[:5], seed=2)
    assert not np.array_equal(s1, s2)


def test_empty_and_short_texts_do_not_collide() -> None:
    texts = ["", "   ", "\u3000", "short one", "short one", "short two", " ".join(f"w{i}" for i in range(30))]
    i, j, _ = _core.near_duplicates(texts)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(3, 4)]


def test_clusters_and_keepers() -> None:
    i = np.array([4, 5, 1], dtype=np.int64)
    j = np.array([2, 4, 3], dtype=np.int64)
    root, keep = _core.clusters(6, i, j)
    assert root.tolist() == [0, 1, 2, 1, 2, 2]
    assert keep.tolist() == root.tolist()
    scores = np.array([0.0, 1.0, 5.0, 9.0, 7.0, 7.0])
    _, keep = _core.clusters(6, i, j, scores)
    assert keep.tolist() == [0, 3, 4, 3, 4, 4]
    with pytest.raises(ValueError, match="NaN"):
        _core.clusters(6, i, j, np.full(6, np.nan))
    with pytest.raises(ValueError, match="outside"):
        _core.clusters(3, i, j)
    with pytest.raises(ValueError, match="bands"):
        _core.near_duplicates(["a"], bands=20, rows=7)


def test_parallel_calls_work_in_a_forked_child() -> None:
    """rayon's global pool does not survive fork(); the binding gives the child its own pool."""
    import os
    import warnings

    texts, _ = _planted(3)
    expect = _core.near_duplicates(texts)[0].tolist()  # the parent's pool is now running
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a multi-threaded process
        pid = os.fork()
    if pid == 0:  # child: exit 0 only if the parallel call completes with the same answer
        ok = _core.near_duplicates(texts)[0].tolist() == expect
        os._exit(0 if ok else 1)
    deadline = 60.0
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the parallel call hung in the forked child")
