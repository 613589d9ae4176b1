"""Paired comparisons of a variant against the baseline, seed by seed.

Every variant of a study runs on the same seeds, so the seed's own effect
(initialisation, data order) cancels in the per-seed difference. The test is
the one evidence rule of ``evidence.py``: the paired t-test with the spread
of the differences taken as at least the metric's resolution (one test image
for an accuracy), so ties and near-ties are judged one way. p-values are
Holm-adjusted over the whole family of comparisons a study makes, and the
interval shown beside a verdict is the Holm-adjusted one: it excludes zero
exactly when the verdict is "better" or "worse". ``VERDICT_RULE`` states the
rule in words; the report and the README print it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from . import evidence
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
    f'A comparison is "better" or "worse" only when its Holm-adjusted p-value is below {ALPHA}, that is when its '
    f"Holm-adjusted 95% CI (the interval at the level Holm's method tested it at) excludes zero; the unadjusted "
    f"interval is shown beside the unadjusted p. The test is {evidence.RULE}. It keeps such false verdicts at "
    f"{ALPHA:.0%} or less with any number of seeds from 2 up, so the "
    f'verdict stands even with few seeds. "No detectable difference" is not "equal": it rules out only '
    f'differences of the "detectable" size or more, and below {MIN_SEEDS} seeds that size is large, so it comes '
    f'with a warning. A variant whose runs diverged on more than half of its seeds gets the verdict "diverged"; '
    f"otherwise diverged seeds are left out of every comparison and named in it."
)


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of one variant with the baseline on one metric.

    ``diff_mean``, ``sd_diff``, ``ci_low`` and ``ci_high`` are in the metric's
    own unit (accuracies are fractions); ``floor`` is the metric's resolution,
    the least spread the test uses (``evidence.py``), and ``test`` names the
    test that decided; ``adj_low`` and ``adj_high`` are the Holm-adjusted
    interval the verdict was decided on. ``sentence`` states the verdict in
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
    floor: float = 0.0  # the metric's resolution: the least spread the test uses
    test: str = ""  # the test that decided, in words
    adj_low: float = math.nan  # the Holm-adjusted interval: excludes zero exactly when p_holm < ALPHA
    adj_high: float = math.nan


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
    ``max_n`` seeds would be needed, or when the spread is not positive (the
    evidence rule never uses a spread below the metric's resolution: pass that).
    """
    if not (math.isfinite(sd_diff) and math.isfinite(difference)) or difference == 0 or sd_diff <= 0:
        return None
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


def paired_p_value(variant, baseline, floor=None) -> np.ndarray:
    """Two-sided p-value of "no mean difference" for paired rows ``variant``, ``baseline`` [..., n], n >= 2.

    The evidence rule (``evidence.p_value``): the paired t-test with the spread at least ``floor``, the
    metric's resolution; None takes the floor of a metric with no step (4 significant digits of the larger
    mean of each row). Vectorised over leading axes, so simulations can test millions of rows;
    ``compare_paired`` calls it with one.
    """
    v, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if floor is None:
        floor = evidence.RELATIVE * np.maximum(np.abs(v.mean(axis=-1)), np.abs(b.mean(axis=-1)))
    return evidence.p_value(v - b, floor)


# ---------------------------------------------------------------- one comparison


def compare_paired(baseline: Mapping[int, float], variant: Mapping[int, float], *, higher_is_better: bool,
                   variant_name: str, baseline_name: str, metric: str, epoch: int,
                   resolution: float | None = None) -> Comparison:
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
    resolution : float, optional
        The metric's step (``stats/resolution.py``), the least spread the test
        uses; None: 4 significant digits of the larger mean.

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
    floor = evidence.relative_floor(b_mean, v_mean) if resolution is None else float(resolution)
    sd = float(diffs.std(ddof=1)) if n >= 2 else nan
    spread = max(sd, floor) if n >= 2 else nan
    p = float(evidence.p_value(diffs, floor)) if n >= 2 else nan
    ci_low, ci_high = evidence.interval(diffs, floor) if n >= 2 else (nan, nan)
    d_z = diff / spread if n >= 2 and spread > 0 else (0.0 if n >= 2 and diff == 0 else nan)
    relative = 100 * diff / abs(b_mean) if n and b_mean != 0 else nan
    wins = int(np.sum(diffs > 0 if higher_is_better else diffs < 0))

    comparison = Comparison(
        variant=variant_name, baseline=baseline_name, metric=metric, epoch=epoch, n=n,
        baseline_mean=b_mean, variant_mean=v_mean, diff_mean=diff, sd_diff=sd, ci_low=ci_low, ci_high=ci_high,
        relative_pct=relative, p_value=p, p_holm=p, d_z=d_z, wins=wins,
        higher_is_better=higher_is_better, mde=minimum_detectable_difference(spread, n),
        verdict=NO_DIFFERENCE, sentence="", warning=None, floor=floor,
        test="" if n < 2 else "paired t-test" + (f", spread taken as the resolution ({format_diff(floor, metric, signed=False)}): "
                                                 f"the seeds agreed more closely than that" if sd < floor else ""),
    )
    return _decide(comparison)


def _adjusted_interval(c: Comparison) -> tuple[float, float]:
    """The interval at the level Holm's method tested this comparison at (``evidence.adjusted_interval``)."""
    return evidence.adjusted_interval(c.diff_mean, c.sd_diff, c.floor, c.n, c.p_value, c.p_holm)


def _decide(c: Comparison) -> Comparison:
    """Set verdict, adjusted interval, sentence and warning from ``p_holm`` and the sign."""
    verdict = NO_DIFFERENCE
    if c.diverged:
        verdict = DIVERGED
    elif c.incomparable:
        verdict = NOT_COMPARABLE
    elif c.n >= 2 and c.p_holm < ALPHA and c.diff_mean != 0:
        favours_variant = (c.diff_mean > 0) == c.higher_is_better
        verdict = BETTER if favours_variant else WORSE
    adj_low, adj_high = _adjusted_interval(c)
    c = dataclasses.replace(c, adj_low=adj_low, adj_high=adj_high)
    return dataclasses.replace(c, verdict=verdict, sentence=sentence(c, verdict), warning=_warning(c, verdict))


def _warning(c: Comparison, verdict: str) -> str | None:
    """Only a "no detectable difference" on few seeds is warned about: a better/worse verdict stands at any n >= 2."""
    if verdict != NO_DIFFERENCE or c.n >= MIN_SEEDS:
        return None
    if c.n < 2:
        return f"only {c.n} paired seed(s): no comparison is possible; run at least {MIN_SEEDS} seeds"
    if not math.isfinite(c.mde):
        return f"only n={c.n} seeds: they can only detect large differences; run at least {MIN_SEEDS} seeds"
    spread = max(c.sd_diff, c.floor)
    shown = {k: format_diff(minimum_detectable_difference(spread, k), c.metric, signed=False)
             for k in (c.n, MIN_SEEDS, DEFAULT_SEEDS)}
    return (f"only n={c.n} seeds: they can only detect differences of {shown[c.n]} or more; run at least "
            f"{MIN_SEEDS} seeds (with this spread, {MIN_SEEDS} detect about {shown[MIN_SEEDS]}, "
            f"{DEFAULT_SEEDS} about {shown[DEFAULT_SEEDS]})")
