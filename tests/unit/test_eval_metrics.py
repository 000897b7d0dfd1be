"""The scaling metrics against hand-computed examples."""

from __future__ import annotations

import pytest

from s1kit.eval.metrics import SweepPoint, budget_error, control, performance, scaling, within


def test_control_counts_evaluations_within_bounds() -> None:
    # 3 of 4 budgeted evaluations lie in [0, 100] or [0, 200]; the unbudgeted one is not counted.
    measured = [
        (50.0, 0.0, 100.0),
        (101.0, 0.0, 100.0),
        (200.0, 0.0, 200.0),
        (10.0, None, 200.0),
        (9.0, None, None),
    ]
    assert control(measured) == pytest.approx(3 / 4)
    assert control([(5.0, None, None)]) is None
    assert within(5, None, None) and within(5, 5, 5) and not within(4.9, 5, None)


def test_scaling_is_the_mean_slope_over_all_pairs() -> None:
    # Points (tokens, acc): (1000, 0.2), (2000, 0.4), (4000, 0.3).
    # Slopes in points per 1k tokens: (40-20)/1 = 20; (30-20)/3 = 3.333..; (30-40)/2 = -5.  Mean = 6.111..
    pts = [SweepPoint(2000, 0.4), SweepPoint(1000, 0.2), SweepPoint(4000, 0.3)]
    assert scaling(pts) == pytest.approx((20 + 10 / 3 - 5) / 3)
    # Order of the points does not matter; per_tokens rescales.
    assert scaling(list(reversed(pts)), per_tokens=1.0) == pytest.approx((20 + 10 / 3 - 5) / 3 / 1000)


def test_scaling_skips_pairs_without_a_length_difference() -> None:
    pts = [SweepPoint(100, 0.1), SweepPoint(100, 0.5), SweepPoint(300, 0.5)]
    # Pairs: (100,.1)-(100,.5) skipped; (100,.1)-(300,.5): 40/200*1000 = 200; (100,.5)-(300,.5): 0.
    assert scaling(pts) == pytest.approx(100.0)
    assert scaling([SweepPoint(1, 0.0)]) is None
    assert scaling([SweepPoint(1, 0.0), SweepPoint(1, 1.0)]) is None


def test_performance_and_budget_error() -> None:
    assert performance([SweepPoint(1, 0.2), SweepPoint(2, 0.7), SweepPoint(3, 0.5)]) == 0.7
    assert performance([]) is None
    # |90-100|/100 = .1, |300-200|/200 = .5, |50-50|/50 = 0  -> mean .2
    assert budget_error([(90, 100), (300, 200), (50, 50)]) == pytest.approx(0.2)
    assert budget_error([]) is None
    with pytest.raises(ValueError, match="positive"):
        budget_error([(1, 0)])
