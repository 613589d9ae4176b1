"""Calibration of claims: under no true difference, "supported" at most 5% of the time (plus Monte Carlo error).

Simulated per-seed differences, at n = 3, 5 and 10: skewed continuous ones
(mean-zero lognormal, sigma 0.25, in both orientations), counts with ties
(differences of two binomial counts, known to one count) and quantised ones
(rounded normal differences, spread 0.3 to 3 steps, known to one step). The
rule is `claim_tests.directional_p` (with the floor of `evidence.py`)
below 5%, leaning the claimed way: what `check_claims` applies, checked
through it too on a smaller sample. The one-sided t-test, the first rule, is
shown in the same simulation to exceed 5% on the skewed differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nnstudy.stats.claim_tests import directional_p, within_p
from nnstudy.stats.claims import SUPPORTED, check_claims
from nnstudy.store.results import EpochRow, RunResult, StudyResults

REPS = 40_000
ALPHA = 0.05


def _limit(reps: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)  # 5% plus three Monte Carlo standard errors


def _null_differences(kind: str, n: int, rng: np.random.Generator, reps: int = REPS) -> np.ndarray:
    if kind == "lognormal":  # right-skewed, mean zero
        return rng.lognormal(0.0, 0.25, (reps, n)) - math.exp(0.25**2 / 2)
    if kind == "lognormal-left":
        return math.exp(0.25**2 / 2) - rng.lognormal(0.0, 0.25, (reps, n))
    if kind == "counts":  # e.g. dead units out of 20: many ties, many equal differences at small n
        return (rng.binomial(20, 0.1, (reps, n)) - rng.binomial(20, 0.1, (reps, n))).astype(float)
    if kind.startswith("quantised"):  # e.g. epochs to a threshold: a normal spread of `scale` steps, rounded
        scale = float(kind.partition("-")[2])
        return np.round(rng.normal(0, scale, (reps, n)))
    raise ValueError(kind)


STEP = {"counts": 1.0, "quantised-0.3": 1.0, "quantised-1": 1.0, "quantised-3": 1.0}  # the rest: no step


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("kind", ["lognormal", "lognormal-left", "counts", "quantised-0.3", "quantised-1",
                                  "quantised-3"])
def test_no_true_difference_is_supported_at_most_5_percent_either_way(kind, n):
    rng = np.random.default_rng(1000 * n + len(kind))
    d = _null_differences(kind, n, rng)
    p, sign = directional_p(d, STEP.get(kind, 0.0))
    for claimed in (1, -1):  # a "greater" claim and a "less" claim
        rate = float(np.mean((p < ALPHA) & (sign == claimed)))
        assert rate <= _limit(REPS), (kind, n, claimed, rate)


@pytest.mark.slow
def test_the_one_sided_t_test_would_not_hold_it_on_skewed_differences():
    """Why claims are two-sided: one-sided at 5%, mean-zero lognormal differences read "less" about 8% of the time."""
    d = _null_differences("lognormal", 5, np.random.default_rng(7))
    one_sided = stats.ttest_1samp(d, 0.0, axis=1, alternative="less").pvalue
    assert float(np.mean(one_sided < ALPHA)) > _limit(REPS)


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 5, 10])
def test_equivalence_at_the_edge_of_the_tolerance_is_supported_at_most_5_percent(n):
    """A within claim whose true difference sits on the tolerance's edge (the null of equivalence tests)."""
    rng = np.random.default_rng(n)
    tol = 0.1
    for sign in (1, -1):
        d = sign * tol + 0.1 * _null_differences("lognormal", n, rng)
        inside, _ = within_p(d, tol, 0.0)
        assert float(np.mean(inside < ALPHA)) <= _limit(REPS), (n, sign)


def test_check_claims_applies_the_calibrated_rule():
    """The same simulation through `check_claims` itself, one study per draw (fewer draws: slower path)."""
    rng = np.random.default_rng(11)
    reps, n = 800, 5
    d = _null_differences("lognormal", n, rng, reps)
    supported = 0
    for row in d:
        runs = []
        for seed in range(n):
            for variant, value in (("a", 0.5), ("b", 0.5 + 0.01 * row[seed])):
                run = RunResult(f"{variant}{seed}", variant, seed, "done", {})
                run.history = [EpochRow(1, 1.0, 0.5, 1.0, value, 0.1, 1.0)]
                runs.append(run)
        claim = {"text": "b below a", "metric": "test_acc", "variant": "b", "baseline": "a", "value": None,
                 "direction": "less", "tolerance": 0.0, "epoch": None}
        study = StudyResults("s", "", ["a", "b"], "a", list(range(n)), [1], ["x"], np.zeros(0), {}, runs,
                             out_dir=None, claims=[claim])
        supported += check_claims(study)[0].verdict == SUPPORTED
    assert supported / reps <= _limit(reps)
