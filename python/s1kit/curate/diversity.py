"""Diversity sampling, s1's final stage: pick a domain uniformly at random, then a question within it
with weight ``2^-rank``, where rank 0 is the longest trace (:func:`rank_length`; longer reasoning =
harder); repeat until
``k`` questions are chosen. Rows marked must-keep (keep-all sources) are chosen first.

Deterministic: domains are visited in sorted order, ties in trace length go to the earlier row, and all
randomness comes from one ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from s1kit.curate.schema import Row
from s1kit.errors import ConfigFieldError


def rank_length(row: Row) -> float:
    """The length that ranks a row within its domain: trace tokens when known, else trace words, else
    (a pool without traces) question words, so that ties do not fall back to input order wholesale."""
    if row.trace_tokens is not None:
        return float(row.trace_tokens)
    if row.trace:
        return float(len(row.trace.split()))
    return float(len((row.question or "").split()))


def _pick_rank(rng: random.Random, m: int) -> int:
    """A rank in ``0..m-1`` with probability proportional to ``2^-rank`` (exact, by inversion)."""
    total = 2.0 - 2.0 ** (1 - m)  # sum of 2^-r for r < m
    u = rng.random() * total
    acc = 0.0
    for r in range(m):
        acc += 2.0**-r
        if u < acc:
            return r
    return m - 1  # only reachable through rounding at the very end of the range


def diversity_sample(
    rows: list[Row],
    k: int,
    *,
    seed: int,
    length: Callable[[Row], float],
    must_keep: set[int] | None = None,
) -> tuple[list[Row], dict[int, str]]:
    """``(selected rows in selection order, {row: why selected})``."""
    if k < 0:
        raise ValueError(f"k={k}: the final size must be >= 0")
    must_keep = must_keep or set()
    rng = random.Random(seed)
    forced = [r for r in rows if r.row in must_keep]
    if len(forced) > k:
        raise ConfigFieldError(
            f"{len(forced)} rows come from keep-all sources but k={k}: raise `k` or narrow `keep_sources`",
            "k",
            "keep_sources",
        )
    selected = list(forced)
    why = {r.row: "kept by keep-all source" for r in forced}
    by_domain: dict[str, list[Row]] = {}
    for r in rows:
        if r.row not in must_keep:
            by_domain.setdefault(r.domain or "", []).append(r)
    # Each domain's candidates sorted by rank: longest first, then input order.
    ranked = {d: sorted(v, key=lambda r: (-length(r), r.row)) for d, v in sorted(by_domain.items())}
    while len(selected) < k and ranked:
        domains = sorted(ranked)
        d = domains[rng.randrange(len(domains))]
        cand = ranked[d]
        pick = cand.pop(_pick_rank(rng, len(cand)))
        selected.append(pick)
        why[pick.row] = f"sampled from domain {d}"
        if not cand:
            del ranked[d]
    return selected, why
