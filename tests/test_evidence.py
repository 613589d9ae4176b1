"""The one evidence rule (stats/evidence.py): by hand, monotone, and calibrated on quantised differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nnstudy.stats import evidence

ALPHA = 0.05


def _limit(reps: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)  # 5% plus three Monte Carlo standard errors


def test_the_rule_by_hand():
    d = np.array([0.3, 0.1, 0.2])
    assert evidence.p_value(d, 0.0) == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)  # spread above the floor
    t = 0.2 / (0.5 / math.sqrt(3))  # the floor replaces a smaller spread
    assert evidence.p_value(d, 0.5) == pytest.approx(2 * stats.t.sf(t, 2))
    assert evidence.p_value(d, 0.5, alternative="greater") == pytest.approx(stats.t.sf(t, 2))
    low, high = evidence.interval(d, 0.5)
    assert (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, 2) * 0.5 / math.sqrt(3))
    assert evidence.p_value(np.zeros(4), 0.0) == 1.0  # nothing differs: no evidence, not a division by zero
    assert evidence.relative_floor(0.5, -2.0, math.nan) == pytest.approx(2e-4)


def test_the_interval_at_the_adjusted_level_decides_exactly_as_the_adjusted_p():
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = rng.normal(0.3, 1.0, 6)
        p = float(evidence.p_value(d, 0.01))
        for factor in (1.0, 2.0, 5.0):
            p_adj = min(1.0, factor * p)
            low, high = evidence.interval(d, 0.01, evidence.adjusted_confidence(p, p_adj))
            if abs(p_adj - ALPHA) > 1e-9:
                assert (low > 0 or high < 0) == (p_adj < ALPHA)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_equal_differences_are_the_strongest_evidence_for_their_mean(n):
    rng = np.random.default_rng(n)
    for step in (1.0, 1 / 359):
        equal = float(evidence.p_value(np.full(n, 3 * step), step))
        for _ in range(100):
            noise = rng.integers(-2, 3, n) * step
            noisy = 3 * step + noise - noise.mean()
            assert equal <= float(evidence.p_value(noisy, step)) + 1e-15


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3, 5, 8, 10, 20])
def test_no_true_difference_rejects_at_most_5_percent_on_rounded_differences(n):
    """Each side rounded to its step (accuracies in whole images, epochs): the spread from 0.05 to 5 steps."""
    rng = np.random.default_rng(n)
    reps = 40_000
    for scale in (0.05, 0.3, 0.7, 1.0, 1.5, 3.0, 5.0):
        a = np.round(rng.normal(0, scale / math.sqrt(2), (reps, n)))
        b = np.round(rng.normal(0, scale / math.sqrt(2), (reps, n)))
        rate = float(np.mean(evidence.p_value(a - b, 1.0) < ALPHA))
        assert rate <= _limit(reps), (n, scale, rate)


def test_the_rule_s_stated_limit_two_valued_differences():
    """Differences of exactly +-2 steps, nothing else: the t-test's assumption fails (the docstring says so)."""
    rng = np.random.default_rng(8)
    d = rng.choice([-2.0, 2.0], size=(40_000, 8))
    assert float(np.mean(evidence.p_value(d, 1.0) < ALPHA)) > _limit(40_000)
