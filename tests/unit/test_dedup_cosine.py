"""Exact all-pairs cosine similarity above a threshold, against a NumPy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from s1kit import _core


def _brute(x: np.ndarray, t: float) -> set[tuple[int, int]]:
    u = x.astype(np.float64)
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
    s = u @ u.T
    i, j = np.nonzero(np.triu(s >= t, k=1))
    return {(a, b) for a, b in zip(i.tolist(), j.tolist(), strict=True) if norms[a] > 0 and norms[b] > 0}


@pytest.mark.parametrize("block", [1, 7, 64, 2048])
def test_matches_brute_force(block: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 24)).astype(np.float32)
    x[10] = x[3] * 2.0 + 1e-3  # planted near-duplicates
    x[200] = x[3] + 1e-4
    x[50] = 0.0  # a zero row never pairs
    t = 0.5
    i, j, sim = _core.cosine_pairs(x, t, block)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    expect = _brute(x, t)
    # Pairs within float32 rounding of the threshold may go either way.
    s64 = {
        (a, b): float(np.dot(x[a], x[b]) / np.linalg.norm(x[a]) / np.linalg.norm(x[b]))
        for a, b in got ^ expect
    }
    assert all(abs(v - t) < 1e-5 for v in s64.values())
    assert {(3, 10), (3, 200), (10, 200)} <= got
    assert all(a < b for a, b in got)
    assert sim.dtype == np.float32 and np.all(sim >= t)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        _core.cosine_pairs(np.array([[np.nan, 1.0]], dtype=np.float32), 0.9)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.cosine_pairs(np.ones((4, 4), dtype=np.float32)[:, ::2], 0.9)
    with pytest.raises(TypeError):
        _core.cosine_pairs(np.ones((4, 4), dtype=np.float64), 0.9)
