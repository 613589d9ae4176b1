"""A number from one run elsewhere against our seeds: would one run of ours give it?

The coursework reports one run per setting; we run several seeds. The mean's
confidence interval answers "what is the setting's true mean", not "what can
one run give": for that the right range is the 95% prediction interval of a
single new run, mean +- t(0.975, n-1) * sd * sqrt(1 + 1/n), which is wider.
A coursework number outside it is one that one run of ours would rarely give
(5% of runs lie outside, if seeds vary as ours do). Needs two seeds or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .summary import Summary, summarize


@dataclass(frozen=True)
class OneRunCheck:
    """Our seeds' values of one number, beside the one-run number it is checked against."""

    ours: Summary  # mean, sd, 95% CI of the mean over our seeds
    seeds: list[int]
    low: float  # 95% prediction interval of one run of ours (nan below two seeds)
    high: float
    theirs: float | None  # the other number (None: not given)
    slack: float = 0.0  # how far `theirs` may be from its printed value (rounding in the print)

    @property
    def judged(self) -> bool:
        return self.theirs is not None and math.isfinite(self.low)

    @property
    def outside(self) -> bool:
        """The printed number, with its rounding, lies wholly outside what one run of ours gives."""
        return self.judged and (self.theirs + self.slack < self.low or self.theirs - self.slack > self.high)


def prediction_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """The t-based interval that holds one more run with probability `confidence`; (nan, nan) below two values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def one_run_check(by_seed: dict[int, float], theirs: float | None, slack: float = 0.0) -> OneRunCheck:
    """Our per-seed values of a number against `theirs`, one run's value (with its print's rounding `slack`)."""
    seeds = sorted(s for s, v in by_seed.items() if math.isfinite(v))
    values = [by_seed[s] for s in seeds]
    low, high = prediction_interval(values)
    return OneRunCheck(summarize(values), seeds, low, high, theirs, slack)


def relative_difference_pct(variant: dict[int, float], reference: dict[int, float]) -> dict[int, float]:
    """Per seed, the variant's value minus the reference's, in percent of the reference's (paired by seed):
    the coursework's "ReLU had 0.2789% higher accuracy than Leaky ReLU"."""
    return {s: 100.0 * (variant[s] - reference[s]) / reference[s]
            for s in sorted(set(variant) & set(reference)) if reference[s] != 0}


def printed_slack(value: float, significant: int = 2) -> float:
    """Half a unit of the last digit of a count printed to `significant` digits (6.9e+02: 5): how far the
    true count may be from the printed one."""
    if value == 0:
        return 0.5
    exponent = math.floor(math.log10(abs(value))) - (significant - 1)
    return max(0.5, 0.5 * 10.0 ** exponent)
