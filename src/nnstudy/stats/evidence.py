"""The one evidence rule for per-seed differences: the t-test with the spread floored at the metric's resolution.

Every comparison and every statistical claim gets its p-value and its interval
here, from the per-seed differences d_1..d_n and the metric's *resolution* r:
the smallest change the metric can show (1/N for an accuracy over N test
images, one epoch for an epoch count; ``stats/resolution.py`` says which for
each metric). The rule:

    spread s = max(sd(d), r);   t = (mean(d) - shift) / (s / sqrt(n)),  n - 1 degrees of freedom

and the interval is mean(d) +- t_crit * s / sqrt(n), so a test rejects exactly
when its interval excludes the shift.

Why a floor, and why this one. A metric known only in steps of r cannot show
a spread below one step: differences that agree to within r (exact ties, or
near-ties like [-9, -9, -9, -9, -8] epochs) agree as far as the metric can
tell, so they are all judged with the spread r, one way. This makes the
evidence monotone: for a given mean, differences that agree perfectly have
the smallest spread the rule allows, so they are never weaker evidence than
noisier ones (the exact sign-flip test, used before for exact ties only,
gave [-9] * 5 p = 0.0625 and [-9, -9, -9, -9, -8] p = 2e-6). And agreement in
the last bits is not overwhelming evidence: it counts as a spread of one
step. A metric with no natural step (a loss, a ratio of gradient norms) is
taken to be known to the four significant digits the report prints
(``RELATIVE``), relative to the larger mean of the two sides.

The rule was chosen, and its floor set to one full step, before looking at
any built-in study's result, by simulating no-difference studies: rounded
normal differences with a spread from 0.05 to 5 steps, n = 2 to 20, reject
at 5.0% or less (``tests/test_evidence.py``); a floor below one step (r /
sqrt(6), the spread rounding alone gives) rejects 6.1% at n = 8. Its
limit: differences that take only two values +-c, c of two steps or more,
break the t-test (with or without the floor): 6-7% at n = 5 and 8. An exact
sign-flip test on every case would hold there, but cannot reject anything
below 6 seeds (2/2^5 = 0.0625), which most studies here have.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
RELATIVE = 1e-4  # a metric without a step is known to 4 significant digits, the precision the report prints

RULE = ("the paired t-test on the per-seed differences, with their spread taken as at least the metric's "
        "resolution (one test image for an accuracy, one epoch for an epoch count, 4 significant digits for a "
        "continuous metric): differences that agree to within the resolution count as agreeing, one way, so a "
        "perfectly consistent effect is never weaker evidence than a noisier one")


def spread(diffs, floor) -> np.ndarray:
    """The spread the test uses, per row of ``diffs`` [..., n]: the sample sd, at least ``floor``."""
    d = np.asarray(diffs, dtype=float)
    sd = d.std(axis=-1, ddof=1) if d.shape[-1] >= 2 else np.full(d.shape[:-1], np.nan)
    return np.maximum(sd, np.asarray(floor, dtype=float))


def t_statistic(diffs, floor, shift=0.0) -> np.ndarray:
    """(mean - shift) / (spread / sqrt(n)) per row; +-inf when the spread is 0 (all values 0), 0 at the shift."""
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    centre = d.mean(axis=-1) - shift
    se = spread(d, floor) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = centre / se
    return np.where(centre == 0, 0.0, t)


def p_value(diffs, floor, shift=0.0, alternative: str = "two-sided") -> np.ndarray:
    """p of "the mean difference is ``shift``" against ``alternative`` ("two-sided", "greater", "less"), per row."""
    d = np.asarray(diffs, dtype=float)
    t = t_statistic(d, floor, shift)
    df = d.shape[-1] - 1
    if alternative == "greater":
        return stats.t.sf(t, df)
    if alternative == "less":
        return stats.t.cdf(t, df)
    return np.minimum(1.0, 2 * stats.t.sf(np.abs(t), df))


def interval(diffs, floor, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """The two-sided interval of the mean difference at ``confidence``, with the same floored spread."""
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    if n < 2 or not 0 < confidence < 1:
        return math.nan, math.nan
    mean, s = float(d.mean()), float(spread(d, floor))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * s / math.sqrt(n)
    return mean - half, mean + half


def adjusted_confidence(p: float, p_adjusted: float, alpha: float = ALPHA) -> float:
    """The confidence at which an interval excludes the null exactly when ``p_adjusted`` < ``alpha``.

    Holm's method multiplies this test's p by a factor c = p_adjusted / p (c >= 1), so it rejects exactly
    when p < alpha / c: the interval at 1 - alpha / c is the one its verdict was decided on.
    """
    if not (math.isfinite(p) and math.isfinite(p_adjusted)) or p <= 0 or p_adjusted <= 0:
        return 1 - alpha
    return 1 - alpha * p / p_adjusted


def adjusted_interval(mean: float, sd: float, floor: float, n: int, p: float, p_adjusted: float,
                      alpha: float = ALPHA) -> tuple[float, float]:
    """The interval at the level Holm's method tested a mean difference at (``adjusted_confidence``), with the
    floored spread: it excludes 0 exactly when ``p_adjusted`` < ``alpha``. (nan, nan) when it cannot be had."""
    spread = max(sd, floor) if n >= 2 else math.nan
    if not (math.isfinite(spread) and math.isfinite(p)):
        return math.nan, math.nan
    level = adjusted_confidence(p, p_adjusted, alpha)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * spread / math.sqrt(n)
    return mean - half, mean + half


def relative_floor(*values) -> float:
    """``RELATIVE`` of the largest |value| among the means compared: the floor of a metric with no step."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(v)]
    return RELATIVE * max(finite, default=0.0)
