"""Duplicate removal on questions: exact (after normalisation), near (MinHash-LSH verified by exact
Jaccard of word 8-gram sets) and optionally by embedding cosine similarity.

Each finds pairs, joins them into clusters with union-find and keeps one row per cluster: the first in
input order (``keep="first"``) or the one with the longest trace (``keep="longest_trace"``; ties go to
the earlier row). All kernels are the Rust ones in :mod:`s1kit._core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from s1kit import _core
from s1kit.curate.schema import Row

KEEP_RULES = ("first", "longest_trace")
Drops = dict[int, tuple[str, dict[str, Any]]]


@dataclass
class NearDupConfig:
    threshold: float = 0.8
    n: int = 8
    num_perm: int = 128
    bands: int = 18
    rows: int = 7
    seed: int = 0


def trace_length(row: Row) -> float:
    """Trace length for ranking: tokens when known, else words of the trace (0 without a trace)."""
    if row.trace_tokens is not None:
        return float(row.trace_tokens)
    return float(len(row.trace.split())) if row.trace else 0.0


def _scores(rows: list[Row], keep: str) -> npt.NDArray[np.float64] | None:
    if keep not in KEEP_RULES:
        raise ValueError(f"keep={keep!r}: use one of {', '.join(KEEP_RULES)}")
    if keep == "first":
        return None
    return np.array([trace_length(r) for r in rows], dtype=np.float64)


def _drop_non_keepers(
    rows: list[Row],
    i: npt.NDArray[np.int64],
    j: npt.NDArray[np.int64],
    sim: npt.NDArray[np.floating[Any]] | None,
    keep: str,
    reason: str,
) -> Drops:
    root, keeper = _core.clusters(len(rows), i, j, _scores(rows, keep))
    sizes = np.bincount(root, minlength=len(rows))
    best_sim: dict[int, float] = {}
    if sim is not None:
        for a, b, s in zip(i.tolist(), j.tolist(), sim.tolist(), strict=True):
            for x in (a, b):
                best_sim[x] = max(best_sim.get(x, 0.0), float(s))
    drops: Drops = {}
    for k, r in enumerate(rows):
        kk = int(keeper[k])
        if kk != k:
            detail: dict[str, Any] = {"kept_row": rows[kk].row, "cluster_size": int(sizes[root[k]])}
            if k in best_sim:
                detail["max_similarity"] = round(best_sim[k], 4)
            drops[r.row] = (reason, detail)
    return drops


def exact_dedup(rows: list[Row], keep: str = "first") -> Drops:
    """Rows whose normalised question equals another row's, all but one per group."""
    rep = _core.exact_duplicates([r.question or "" for r in rows])
    idx = np.arange(len(rows), dtype=np.int64)
    dup = rep != idx
    return _drop_non_keepers(rows, idx[dup], rep[dup], None, keep, "exact duplicate question")


def near_dedup(rows: list[Row], cfg: NearDupConfig, keep: str = "first") -> Drops:
    """Rows whose question's n-gram Jaccard similarity with another is at least ``cfg.threshold``."""
    i, j, jac = _core.near_duplicates(
        [r.question or "" for r in rows], cfg.n, cfg.num_perm, cfg.bands, cfg.rows, cfg.threshold, cfg.seed
    )
    return _drop_non_keepers(rows, i, j, jac, keep, f"near-duplicate question (Jaccard >= {cfg.threshold})")


def embedding_dedup(
    rows: list[Row], embeddings: npt.NDArray[np.float32], threshold: float, keep: str = "first"
) -> Drops:
    """Rows whose question embedding has cosine similarity ``>= threshold`` with another (exact)."""
    if embeddings.shape[0] != len(rows):
        raise ValueError(f"embeddings has {embeddings.shape[0]} rows for {len(rows)} questions")
    i, j, sim = _core.cosine_pairs(np.ascontiguousarray(embeddings, dtype=np.float32), threshold)
    return _drop_non_keepers(rows, i, j, sim, keep, f"embedding near-duplicate (cosine >= {threshold})")
