"""Paired comparisons of a variant against the baseline, seed by seed.

Every variant of a study runs on the same seeds, so the seed's own effect
(initialisation, data order) cancels in the per-seed difference. The test is
the paired t-test (``scipy.stats.ttest_rel``); when every seed gives the same
difference its statistic is undefined (sd 0), and the exact sign-flip test
decides instead. p-values are Holm-adjusted over the whole family of
comparisons a study makes. ``VERDICT_RULE`` states the verdict rule in words;
the report and the README print it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from .summary import t_interval
from .words import format_diff, sentence

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 5  # below this a "no detectable difference" carries a warning
DEFAULT_SEEDS = 10  # the warning also says what this many seeds would detect

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
DIVERGED = "diverged"
NOT_COMPARABLE = "not comparable"

VERDICT_RULE = (
    f'A comparison is "better" or "worse" only when its Holm-adjusted p-value is below {ALPHA} and the 95% CI '
    f"of the difference excludes zero. The paired t-test (an exact sign-flip test when every seed gives the same "
    f"difference) keeps such false verdicts at {ALPHA:.0%} or less with any number of seeds from 2 up, so the "
    f'verdict stands even with few seeds. "No detectable difference" is not "equal": it rules out only '
    f'differences of the "detectable" size or more, and below {MIN_SEEDS} seeds that size is large, so it comes '
    f'with a warning. A variant whose runs diverged on more than half of its seeds gets the verdict "diverged"; '
    f"otherwise diverged seeds are left out of every comparison and named in it."
)


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of one variant with the baseline on one metric.

    ``diff_mean``, ``sd_diff``, ``ci_low`` and ``ci_high`` are in the metric's
    own unit (accuracies are fractions); ``sentence`` states the verdict in
    words with accuracies in percentage points. ``diverged`` says why a
    comparison was not made (verdict "diverged"), ``excluded`` which seeds were
    left out because they diverged. See ``VERDICT_RULE`` for the rule.
    """

    variant: str
    baseline: str
    metric: str
    epoch: int
    n: int
    baseline_mean: float
    variant_mean: float
    diff_mean: float
    sd_diff: float
    ci_low: float
    ci_high: float
    relative_pct: float
    p_value: float
    p_holm: float
    d_z: float
    wins: int
    higher_is_better: bool
    mde: float
    verdict: str
    sentence: str
    warning: str | None
    diverged: str | None = None
    excluded: str | None = None
    incomparable: str | None = None  # why the values are on different scales (losses of different kinds)


# ---------------------------------------------------------------- power


def _power(d: float, n, alpha: float = ALPHA):
    """Power of the two-sided paired t-test for standardized effect ``d``.

    ``n`` may be an array; the noncentral t distribution gives the exact power.
    """
    n = np.asarray(n, dtype=float)
    df = n - 1
    nc = d * np.sqrt(n)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    # P(T > t_crit) + P(T < -t_crit); the lower tail is written as an upper
    # tail of -T, which scipy evaluates without nan far out in the tail.
    return stats.nct.sf(t_crit, df, nc) + stats.nct.sf(t_crit, df, -nc)


@functools.lru_cache(maxsize=1024)
def _detectable_effect(n: int, alpha: float, power: float) -> float:
    """Smallest standardized effect d_z that ``n`` seeds detect with ``power``."""
    high = 1.0
    while _power(high, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: _power(d, n, alpha) - power, 0.0, high, xtol=1e-10))


def minimum_detectable_difference(sd_diff: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean paired difference a paired t-test can reliably detect.

    The difference at which a two-sided test at level ``alpha`` on ``n``
    seeds, with differences spread by ``sd_diff``, has the given power.

    Returns
    -------
    float
        In the unit of ``sd_diff``; nan if ``n < 2`` or the spread is zero
        or not finite (nothing to scale).
    """
    if n < 2 or not math.isfinite(sd_diff) or sd_diff <= 0:
        return math.nan
    return float(sd_diff) * _detectable_effect(int(n), float(alpha), float(power))


def recommended_seeds(sd_diff: float, difference: float, alpha: float = ALPHA, power: float = POWER,
                      max_n: int = 200) -> int | None:
    """Smallest number of seeds that detects ``difference`` with the given power.

    Returns None when the difference is zero or not finite, or when more than
    ``max_n`` seeds would be needed. A zero spread needs the seeds the exact
    sign-flip test needs to reject equal differences (``exact_min_seeds``).
    """
    if not (math.isfinite(sd_diff) and math.isfinite(difference)) or difference == 0:
        return None
    if sd_diff <= 0:
        return exact_min_seeds(alpha)
    # Power grows with n: scan blocks of doubling size (2-3, 4-7, 8-15, ...)
    # so that the usual small answers cost little.
    start = 2
    while start <= max_n:
        ns = np.arange(start, min(2 * start, max_n + 1))
        enough = _power(abs(difference) / sd_diff, ns, alpha) >= power
        if enough.any():
            return int(ns[np.argmax(enough)])
        start *= 2
    return None


# ---------------------------------------------------------------- Holm


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0),
    made monotone with a running maximum and capped at 1. nan p-values stay
    nan and do not count in the family size.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


def apply_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm-adjust a family of comparisons and redo their verdicts."""
    adjusted = holm([c.p_value for c in comparisons])
    return [_decide(dataclasses.replace(c, p_holm=p)) for c, p in zip(comparisons, adjusted)]


# ---------------------------------------------------------------- the test


def exact_min_seeds(alpha: float = ALPHA) -> int:
    """Seeds the exact sign-flip test needs before equal differences can reach p < alpha (6 at 0.05)."""
    n = 2
    while 2 / 2**n >= alpha:
        n += 1
    return n


def all_equal(diffs: np.ndarray) -> np.ndarray:
    # Equal up to float rounding (0.82 - 0.81 vs 0.71 - 0.70), per row.
    scale = np.maximum(1.0, np.abs(diffs).max(axis=-1))
    return np.ptp(diffs, axis=-1) <= 1e-12 * scale


def sign_flip_p_value(diffs) -> np.ndarray:
    """Exact two-sided sign-flip (paired permutation) test of each row of ``diffs`` [..., n].

    Under "no difference" each seed's difference is as likely to have either
    sign, so p is the share of the 2^n sign patterns whose |mean| is at least
    the observed |mean|. n equal nonzero differences give 2 / 2^n, all zero 1.
    """
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    if n > 20:
        raise ValueError(f"sign_flip_p_value enumerates 2^n sign patterns; n={n} is too many")
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))  # [2^n, n]
    observed = np.abs(d.mean(axis=-1))
    flipped = np.abs(d @ signs.T) / n  # [..., 2^n]
    tol = 1e-12 * np.maximum(1.0, observed)
    return (flipped >= (observed - tol)[..., None]).mean(axis=-1)


def paired_p_value(variant, baseline) -> np.ndarray:
    """Two-sided p-value of "no mean difference" for paired rows ``variant``, ``baseline`` [..., n], n >= 2.

    The paired t-test where the differences vary; where they are all equal its
    statistic is undefined, and the exact sign-flip test takes over (on the
    exactly equal differences). Vectorised over leading axes, so simulations
    can test millions of rows; ``compare_paired`` calls it with one.
    """
    v, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    diffs = v - b
    tied = all_equal(diffs)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on the tied rows we replace
        p = np.asarray(stats.ttest_rel(v, b, axis=-1).pvalue, dtype=float)
    if np.any(tied):
        exact = np.broadcast_to(np.median(diffs, axis=-1, keepdims=True), diffs.shape)
        p = np.where(tied, sign_flip_p_value(exact), p)
    return p


# ---------------------------------------------------------------- one comparison


def compare_paired(baseline: Mapping[int, float], variant: Mapping[int, float], *, higher_is_better: bool,
                   variant_name: str, baseline_name: str, metric: str, epoch: int) -> Comparison:
    """Compare a variant with the baseline on the seeds both have.

    Parameters
    ----------
    baseline, variant : mapping of seed -> value
        Seeds missing from either side or with a non-finite value on either
        side are dropped, so the remaining values stay paired.
    higher_is_better : bool
        Direction of the metric (see ``nnstudy.store.results.METRICS``).
    variant_name, baseline_name, metric, epoch
        Used for the record and the sentence. ``epoch < 0`` means "not tied
        to an epoch" and is left out of the sentence.

    Returns
    -------
    Comparison
        With ``p_holm == p_value``; use ``apply_holm`` over the family.
    """
    seeds = sorted(s for s in set(baseline) & set(variant)
                   if math.isfinite(baseline[s]) and math.isfinite(variant[s]))
    b = np.array([baseline[s] for s in seeds], dtype=float)
    v = np.array([variant[s] for s in seeds], dtype=float)
    diffs = v - b
    n = len(seeds)
    nan = math.nan

    b_mean = float(b.mean()) if n else nan
    v_mean = float(v.mean()) if n else nan
    diff = float(diffs.mean()) if n else nan
    sd = float(diffs.std(ddof=1)) if n >= 2 else nan
    p = float(paired_p_value(v, b)) if n >= 2 else nan
    ci_low, ci_high = t_interval(diff, sd, n)
    d_z = diff / sd if n >= 2 and sd > 0 else nan
    if n >= 2 and all_equal(diffs):
        # The difference is exact, with no spread: the t-interval would collapse onto it. The interval of
        # the exact test is that point once it can reject every other shift, else unbounded.
        diff, sd = float(np.median(diffs)), 0.0
        ci_low, ci_high = (diff, diff) if 2 / 2**n < ALPHA else (-math.inf, math.inf)
        d_z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    relative = 100 * diff / abs(b_mean) if n and b_mean != 0 else nan
    wins = int(np.sum(diffs > 0 if higher_is_better else diffs < 0))

    comparison = Comparison(
        variant=variant_name, baseline=baseline_name, metric=metric, epoch=epoch, n=n,
        baseline_mean=b_mean, variant_mean=v_mean, diff_mean=diff, sd_diff=sd, ci_low=ci_low, ci_high=ci_high,
        relative_pct=relative, p_value=p, p_holm=p, d_z=d_z, wins=wins,
        higher_is_better=higher_is_better, mde=minimum_detectable_difference(sd, n),
        verdict=NO_DIFFERENCE, sentence="", warning=None,
    )
    return _decide(comparison)


def _decide(c: Comparison) -> Comparison:
    """Set verdict, sentence and warning from ``p_holm``, the interval and the sign."""
    verdict = NO_DIFFERENCE
    if c.diverged:
        verdict = DIVERGED
    elif c.incomparable:
        verdict = NOT_COMPARABLE
    elif c.n >= 2 and c.p_holm < ALPHA and (c.ci_low > 0 or c.ci_high < 0):
        favours_variant = (c.diff_mean > 0) == c.higher_is_better
        verdict = BETTER if favours_variant else WORSE
    return dataclasses.replace(c, verdict=verdict, sentence=sentence(c, verdict, exact_min_seeds()),
                               warning=_warning(c, verdict))


def _warning(c: Comparison, verdict: str) -> str | None:
    """Only a "no detectable difference" on few seeds is warned about: a better/worse verdict stands at any n >= 2."""
    if verdict != NO_DIFFERENCE or c.n >= MIN_SEEDS:
        return None
    if c.n < 2:
        return f"only {c.n} paired seed(s): no comparison is possible; run at least {MIN_SEEDS} seeds"
    if c.sd_diff == 0 and c.diff_mean != 0:
        return (f"only n={c.n} seeds, each with the same difference: telling it from chance takes at least "
                f"{exact_min_seeds()} seeds")
    if not math.isfinite(c.mde):
        return f"only n={c.n} seeds: they can only detect large differences; run at least {MIN_SEEDS} seeds"
    shown = {k: format_diff(minimum_detectable_difference(c.sd_diff, k), c.metric, signed=False)
             for k in (c.n, MIN_SEEDS, DEFAULT_SEEDS)}
    return (f"only n={c.n} seeds: they can only detect differences of {shown[c.n]} or more; run at least "
            f"{MIN_SEEDS} seeds (with this spread, {MIN_SEEDS} detect about {shown[MIN_SEEDS]}, "
            f"{DEFAULT_SEEDS} about {shown[DEFAULT_SEEDS]})")
