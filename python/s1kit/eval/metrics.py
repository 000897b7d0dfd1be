"""The s1 paper's test-time-scaling metrics, over the sweep points of one method on one dataset.

A *sweep point* is one setting of a method (a thinking cap, a number of "Wait"s, a step budget, k votes)
evaluated on the whole dataset: its accuracy and its mean thinking tokens.

- **Control**: the fraction of evaluations whose measured length lies within the method's ``[min, max]``
  budget for that point (points without a budget are left out; ``None`` if no point has one).
- **Scaling**: the mean slope of accuracy against mean thinking tokens over all pairs of sweep points
  (pairs ordered by thinking tokens; pairs with equal thinking tokens have no slope and are left out).
  Reported in accuracy percentage points per 1,000 thinking tokens.
- **Performance**: the best accuracy over the sweep.
- **Budget error**: the mean of ``|thinking tokens - budget| / budget`` over evaluations with a token budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a method evaluated on a dataset: accuracy in [0, 1], mean thinking tokens."""

    mean_thinking_tokens: float
    accuracy: float


def within(value: float, low: float | None, high: float | None) -> bool:
    """Whether ``low <= value <= high`` (a ``None`` bound is open)."""
    return (low is None or value >= low) and (high is None or value <= high)


def control(measured: Iterable[tuple[float, float | None, float | None]]) -> float | None:
    """Fraction of ``(length, min, max)`` evaluations within their bounds; evaluations with both bounds
    ``None`` (no budget) are skipped; ``None`` when nothing remains."""
    flags = [within(v, lo, hi) for v, lo, hi in measured if lo is not None or hi is not None]
    return sum(flags) / len(flags) if flags else None


def scaling(points: Sequence[SweepPoint], per_tokens: float = 1000.0) -> float | None:
    """Mean slope of accuracy (percentage points) per ``per_tokens`` thinking tokens over all pairs.

    For points ``a, b`` with ``tokens(a) < tokens(b)`` the slope is ``(acc(b) - acc(a)) / (tokens(b) -
    tokens(a))``. ``None`` with fewer than two points of distinct thinking length.
    """
    slopes = []
    for p, q in itertools.combinations(points, 2):
        a, b = (p, q) if p.mean_thinking_tokens <= q.mean_thinking_tokens else (q, p)
        dx = b.mean_thinking_tokens - a.mean_thinking_tokens
        if dx <= 0:
            continue
        slopes.append(100.0 * (b.accuracy - a.accuracy) / dx * per_tokens)
    return sum(slopes) / len(slopes) if slopes else None


def performance(points: Sequence[SweepPoint]) -> float | None:
    """Best accuracy over the sweep (``None`` for an empty sweep)."""
    return max((p.accuracy for p in points), default=None)


def budget_error(measured: Iterable[tuple[float, float]]) -> float | None:
    """Mean ``|tokens - budget| / budget`` over ``(tokens, budget)`` pairs; ``None`` when empty."""
    errors = []
    for tokens, budget in measured:
        if budget <= 0:
            raise ValueError(f"budget={budget} must be positive to compute a relative budget error")
        errors.append(abs(tokens - budget) / budget)
    return sum(errors) / len(errors) if errors else None
