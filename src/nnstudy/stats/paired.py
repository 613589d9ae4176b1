"""Paired comparisons of a variant against the baseline, seed by seed.

Every variant of a study runs on the same seeds, so the seed's own effect
(initialisation, data order) cancels in the per-seed difference. The test is
the paired t-test (``scipy.stats.ttest_rel``); p-values are Holm-adjusted over
the whole family of comparisons a study makes, and a comparison is called
"better" or "worse" only when the adjusted p-value is below 0.05 and the
interval of the mean difference excludes zero. Otherwise the verdict is "no
detectable difference", reported together with the smallest difference the
seeds could have detected, so that "no difference" is never read as "equal".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from nnstudy.store.results import METRICS, StudyResults

from .summary import t_interval

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 5  # below this a comparison carries a warning
DEFAULT_SEEDS = 10  # advice when the needed seed count cannot be estimated

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"

_LABELS = {
    "test_acc": "test accuracy",
    "test_loss": "test loss",
    "train_acc": "train accuracy",
    "train_loss": "train loss",
}


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of one variant with the baseline on one metric.

    ``diff_mean``, ``ci_low`` and ``ci_high`` are in the metric's own unit
    (accuracies are fractions); ``sentence`` states the verdict in words with
    accuracies in percentage points. See the module docstring for the rule.
    """

    variant: str
    baseline: str
    metric: str
    epoch: int
    n: int
    baseline_mean: float
    variant_mean: float
    diff_mean: float
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
    ``max_n`` seeds would be needed. A zero spread needs only 2 seeds.
    """
    if not (math.isfinite(sd_diff) and math.isfinite(difference)) or difference == 0:
        return None
    if sd_diff <= 0:
        return 2
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
    if n >= 2 and np.ptp(diffs) <= 1e-12 * max(1.0, float(np.abs(diffs).max())):
        # identical differences (up to float rounding, e.g. 0.82 - 0.81 vs
        # 0.71 - 0.70): the difference is exact and has no spread
        diff, sd = float(np.median(diffs)), 0.0
    ci_low, ci_high = t_interval(diff, sd, n)
    relative = 100 * diff / abs(b_mean) if n and b_mean != 0 else nan

    if n < 2:
        p, d_z = nan, nan
    elif sd == 0:
        # ttest_rel is undefined here; identical differences are exact.
        p = 1.0 if diff == 0 else 0.0
        d_z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        p = float(stats.ttest_rel(v, b).pvalue)
        d_z = diff / sd
    wins = int(np.sum(diffs > 0 if higher_is_better else diffs < 0))

    comparison = Comparison(
        variant=variant_name, baseline=baseline_name, metric=metric, epoch=epoch, n=n,
        baseline_mean=b_mean, variant_mean=v_mean, diff_mean=diff, ci_low=ci_low, ci_high=ci_high,
        relative_pct=relative, p_value=p, p_holm=p, d_z=d_z, wins=wins,
        higher_is_better=higher_is_better, mde=minimum_detectable_difference(sd, n),
        verdict=NO_DIFFERENCE, sentence="", warning=_warning(n, sd, diff),
    )
    return _decide(comparison)


def _warning(n: int, sd: float, diff: float) -> str | None:
    if n >= MIN_SEEDS:
        return None
    needed = recommended_seeds(sd, diff) if n >= 2 else None
    needed = max(needed, MIN_SEEDS) if needed is not None else DEFAULT_SEEDS
    return f"only n={n} seeds: no conclusion is possible; run at least {needed} seeds"


def _decide(c: Comparison) -> Comparison:
    """Set verdict and sentence from ``p_holm``, the interval and the sign."""
    verdict = NO_DIFFERENCE
    if c.n >= 2 and c.p_holm < ALPHA and (c.ci_low > 0 or c.ci_high < 0):
        favours_variant = (c.diff_mean > 0) == c.higher_is_better
        verdict = BETTER if favours_variant else WORSE
    return dataclasses.replace(c, verdict=verdict, sentence=_sentence(c, verdict))


# ---------------------------------------------------------------- words


def metric_label(metric: str) -> str:
    """Human name of a metric: "test_acc" -> "test accuracy", "f1:cat" -> "F1 of class cat"."""
    if metric.startswith("f1:"):
        return f"F1 of class {metric[3:]}"
    return _LABELS.get(metric, metric.replace("_", " "))


def is_fraction(metric: str) -> bool:
    """Whether the metric is a fraction in [0, 1], shown in percentage points."""
    return metric.endswith("_acc") or metric.startswith("f1:")


def format_diff(value: float, metric: str, signed: bool = True, unit: bool = True) -> str:
    """A difference in the metric's display unit ("+0.42 pp" or "-0.0123")."""
    if not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    if is_fraction(metric):
        return f"{100 * value:{sign}.2f}" + (" pp" if unit else "")
    return f"{value:{sign}.4f}"


def format_p(p: float) -> str:
    """"p = 0.031", "p < 0.001": two significant digits, never rounded across 0.05."""
    if not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    text = f"{p:.2g}"
    if (float(text) < ALPHA) != (p < ALPHA):
        text = f"{p:.3g}"
    return f"p = {text}"


def _sentence(c: Comparison, verdict: str) -> str:
    where = f" on {metric_label(c.metric)}" + (f" at epoch {c.epoch}" if c.epoch >= 0 else "")
    ci = f"95% CI {format_diff(c.ci_low, c.metric, unit=False)} to {format_diff(c.ci_high, c.metric, unit=False)}"
    diff = format_diff(c.diff_mean, c.metric)
    if verdict in (BETTER, WORSE):
        seeds = f"{c.wins}/{c.n} seeds" if verdict == BETTER else f"better on only {c.wins}/{c.n} seeds"
        return (f"{c.variant} is {verdict} than {c.baseline}{where}: {diff} ({ci}), "
                f"Holm {format_p(c.p_holm)}, {seeds}.")
    head = f"{c.variant} vs {c.baseline}{where}: no detectable difference"
    if c.n < 2:
        return f"{head}: only {c.n} paired seed(s), a comparison needs at least 2."
    text = f"{head} at n={c.n} (diff {diff}, {ci}, Holm {format_p(c.p_holm)})"
    if math.isfinite(c.mde):
        return (f"{text}; with this spread, {c.n} seeds can only detect differences of "
                f"{format_diff(c.mde, c.metric, signed=False)} or more.")
    return f"{text}; every seed gave the same difference."


# ---------------------------------------------------------------- a whole study


def compare_study(results: StudyResults, metrics: Sequence[str] = ("test_acc", "test_loss")) -> list[Comparison]:
    """Compare every variant with the baseline at every reported epoch.

    Runs that failed or lack the epoch are skipped; the remaining values are
    paired by seed. Holm is applied over all comparisons returned, which are
    ordered by epoch, then metric, then variant in study order.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")

    def values(variant: str, metric: str, epoch: int) -> dict[int, float]:
        out = {}
        for run in results.runs_of(variant):
            row = run.at_epoch(epoch) if run.status != "failed" else None
            if row is not None:
                out[run.seed] = float(getattr(row, metric))
        return out

    comparisons = []
    for epoch in results.report_epochs:
        for metric in metrics:
            base = values(results.baseline, metric, epoch)
            for variant in results.variants:
                if variant == results.baseline:
                    continue
                comparisons.append(compare_paired(
                    base, values(variant, metric, epoch), higher_is_better=METRICS[metric],
                    variant_name=variant, baseline_name=results.baseline, metric=metric, epoch=epoch))
    return apply_holm(comparisons)
