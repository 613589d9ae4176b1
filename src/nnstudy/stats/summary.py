"""Describe one set of per-seed numbers: mean, spread and a confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    """Mean, sample spread and t-interval of the mean of a set of values.

    Attributes
    ----------
    n : int
        Number of finite values summarised (non-finite ones are dropped).
    mean, std, min, max : float
        ``std`` is the sample standard deviation (``ddof=1``); nan if ``n < 2``.
    ci_low, ci_high : float
        Two-sided t-interval of the mean at the requested confidence;
        nan if ``n < 2``.
    """

    n: int
    mean: float
    std: float
    min: float
    max: float
    ci_low: float
    ci_high: float


def t_interval(mean: float, sd: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided t-interval of a mean from its sample sd and sample size.

    Returns ``(nan, nan)`` when ``n < 2``. A zero spread gives the degenerate
    interval ``(mean, mean)``: every value was the same.
    """
    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    if sd == 0:
        return float(mean), float(mean)
    low, high = _standard_t_interval(confidence, int(n) - 1)
    scale = sd / math.sqrt(n)
    return float(low * scale + mean), float(high * scale + mean)  # as scipy scales and shifts: the same bits


@lru_cache(maxsize=None)
def _standard_t_interval(confidence: float, df: int) -> tuple[float, float]:
    """scipy's central t-interval at loc 0, scale 1, cached: a call costs about 70 us, and a long study's report asks
    for thousands of intervals (one per epoch, panel and variant) over a few degrees of freedom."""
    low, high = stats.t.interval(confidence, df)
    return float(low), float(high)


def summarize(values, confidence: float = 0.95) -> Summary:
    """Summarise per-seed values of one metric.

    Non-finite values (a diverged run's nan loss, say) are dropped, so ``n``
    counts only the values that entered the statistics.

    Parameters
    ----------
    values : array-like of float
        One value per seed.
    confidence : float, default=0.95
        Coverage of the t-interval of the mean.

    Returns
    -------
    Summary
        With ``n == 0`` every field but ``n`` is nan; with ``n == 1`` the
        spread and interval are nan.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    if np.ptp(x) == 0:  # all equal: keep mean and spread exact, free of rounding
        mean, std = float(x[0]), (0.0 if n >= 2 else math.nan)
    else:
        mean, std = float(np.mean(x)), float(np.std(x, ddof=1))
    low, high = t_interval(mean, std, n, confidence)
    return Summary(n, mean, std, float(np.min(x)), float(np.max(x)), low, high)
