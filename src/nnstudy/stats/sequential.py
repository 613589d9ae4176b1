"""Seeds until decided: a group sequential design over the seeds of a paired comparison.

The study looks at the data after n_1 < n_2 < ... < n_K seeds (e.g. 3, 5, 8,
12, 20). At each look the paired differences (variant - baseline, per seed)
give a t statistic and a repeated confidence interval (Jennison and Turnbull):
mean +- c_k x sd / sqrt(n_k). The verdict at look k:

- "better" / "worse" when the interval excludes zero (|t| > c_k);
- "equivalent within +-d" when it lies inside the smallest difference worth
  knowing;
- otherwise the study goes on; at the last look, "undecided at n=K".

The critical values c_k spend the error rate alpha over the looks with a
Lan-DeMets spending function (Pocock-type by default: spending evenly, so
early looks can stop; O'Brien-Fleming-type spends little early). They are
fitted for small-n t statistics by simulating paired normal differences, with
a fixed random seed, so a design always gets the same boundaries: the
probability that some look's interval misses the true difference is alpha,
which bounds both false "better/worse" verdicts (true difference 0) and false
"equivalent" ones (true difference beyond d). Normal-theory boundaries
(gsDesign, ldbounds) assume a known variance and are too liberal at n = 3.
The spread is taken as at least the metric's resolution, as in every other
test (`evidence.py`), so equal and nearly equal differences are judged one way.

`tests/test_sequential.py` checks the error rate on normal, heavy-tailed and
tied (count) differences, and that naive re-testing at 5% on every look
exceeds it. Paired differences under "no difference" are symmetric (the two
arms of a seed are exchangeable), so those are the cases that matter; a
strongly skewed difference with mean zero can push one direction above 2.5%.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from nnstudy import run_status
from nnstudy.config.schema import LOOKS_RULE, looks_increase
from nnstudy.store.results import METRICS

from .paired import ALPHA, recommended_seeds
from .words import format_diff

SPENDING = ("pocock", "obrien-fleming")
BETTER, WORSE, EQUIVALENT, CONTINUE, UNDECIDED = "better", "worse", "equivalent", "continue", "undecided"
_PATHS = 200_000  # simulated null paths per design: c_k to about 1% of its value
_SEED = 20_241_202  # fixed: the same design gets the same boundaries on every machine


@dataclass(frozen=True)
class Boundary:
    n: int  # seeds at this look
    critical_t: float  # |t| beyond this decides better/worse (inf: no decision possible yet)
    nominal_p: float  # the two-sided p-value level equivalent to critical_t
    spent: float  # cumulative alpha spent up to this look


@dataclass(frozen=True)
class Look:
    n: int
    estimate: float  # mean paired difference
    ci_low: float  # the repeated confidence interval
    ci_high: float
    p_value: float  # the two-sided p of the paired test at this look (t-test, spread at least the resolution)
    boundary: Boundary
    decision: str  # better | worse | equivalent | continue | undecided


def spent_alpha(fraction: float, alpha: float, spending: str) -> float:
    """Lan-DeMets spending function: alpha spent by information fraction n_k / n_K."""
    if spending == "pocock":
        return alpha * math.log(1 + (math.e - 1) * fraction)
    if spending == "obrien-fleming":
        return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(fraction)))
    raise ValueError(f"spending must be one of {SPENDING}, got {spending!r}")


@functools.lru_cache(maxsize=64)
def boundaries(looks: tuple[int, ...], alpha: float = 0.05, spending: str = "pocock") -> tuple[Boundary, ...]:
    """Critical |t| per look such that, under no difference, some look crosses with probability alpha.

    Fitted on simulated paths of paired normal differences (the t statistic's own small-n distribution), with
    each look spending `spent_alpha(n_k / n_K) - spent_alpha(n_{k-1} / n_K)` of the paths not yet stopped.
    """
    if not looks_increase(looks):
        raise ValueError(f"{LOOKS_RULE}, got {list(looks)}")
    t_paths = _t_paths(looks, _PATHS, np.random.default_rng(_SEED))
    alive = np.ones(_PATHS, dtype=bool)
    out, spent_before = [], 0.0
    for k, n in enumerate(looks):
        spent = spent_alpha(n / looks[-1], alpha, spending)
        stop = int(round((spent - spent_before) * _PATHS))
        ranked = np.sort(t_paths[alive, k])[::-1]
        critical = float((ranked[stop - 1] + ranked[stop]) / 2) if 1 <= stop < len(ranked) else math.inf
        alive &= ~(t_paths[:, k] > critical)
        nominal = float(2 * stats.t.sf(critical, n - 1)) if math.isfinite(critical) else 0.0
        out.append(Boundary(n, critical, nominal, spent))
        spent_before = spent
    return tuple(out)


def _t_paths(looks: tuple[int, ...], paths: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    """|t| at each look for `paths` sequences of standard normal differences (+ shift): [paths, looks]."""
    x = rng.standard_normal((paths, looks[-1])) + shift
    total, squares = np.cumsum(x, 1), np.cumsum(x * x, 1)
    n = np.asarray(looks)
    mean = total[:, n - 1] / n
    var = (squares[:, n - 1] - n * mean**2) / (n - 1)
    return np.abs(mean) / np.sqrt(np.maximum(var, 1e-300) / n)


def decide(diffs: np.ndarray, boundary: Boundary, smallest: float, last: bool, floor: float) -> Look:
    """The verdict at one look from the paired differences of its first n seeds (spread at least `floor`)."""
    d = np.asarray(diffs, dtype=float)[None, :]
    mean, low, high, p, decision = _decide_rows(d, boundary, smallest, last, floor)
    return Look(d.shape[1], float(mean[0]), float(low[0]), float(high[0]), float(p[0]), boundary, str(decision[0]))


def critical_t(boundary: Boundary, n: int) -> float:
    """The look's critical |t| for n pairs: its own where n is the planned count, else the same nominal level's
    (fewer pairs when seeds diverged or failed)."""
    if n == boundary.n or not math.isfinite(boundary.critical_t):
        return boundary.critical_t
    return float(stats.t.isf(boundary.nominal_p / 2, n - 1))


def _decide_rows(d: np.ndarray, boundary: Boundary, smallest: float, last: bool, floor: float = 0.0):
    """`decide` for every row of d [rows, n] at once: (mean, low, high, p, decision) arrays."""
    n = d.shape[1]
    mean = d.mean(1)
    sd = np.maximum(d.std(1, ddof=1), floor)  # the evidence rule: at least the metric's resolution
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(mean == 0, 1.0, 2 * stats.t.sf(np.abs(mean) / (sd / math.sqrt(n)), n - 1))
    half = critical_t(boundary, n) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    decision = np.full(len(d), UNDECIDED if last else CONTINUE, dtype=object)
    decision[(-smallest < low) & (high < smallest)] = EQUIVALENT
    decision[low > 0] = BETTER
    decision[high < 0] = WORSE
    return mean, low, high, p, decision


def simulate(looks: tuple[int, ...], difference: float, sd: float, smallest: float, *, alpha: float = 0.05,
             spending: str = "pocock", paths: int = 20_000, seed: int = 0, noise=None, floor: float = 0.0) -> dict:
    """Share of each final verdict and the mean seeds used, over simulated studies.

    `noise(rng, shape)` draws the differences' deviations (default: normal with `sd`), so the same
    design can be checked on heavy-tailed or tied differences.
    """
    rng = np.random.default_rng(seed)
    draw = noise or (lambda g, shape: g.standard_normal(shape) * sd)
    x = difference + draw(rng, (paths, looks[-1]))
    design = boundaries(tuple(looks), alpha, spending)
    verdict = np.full(paths, CONTINUE, dtype=object)
    used = np.zeros(paths)
    for k, b in enumerate(design):
        open_ = verdict == CONTINUE
        *_, decision = _decide_rows(x[open_, : b.n], b, smallest, last=k == len(design) - 1, floor=floor)
        verdict[open_] = decision
        used[open_] = b.n
    return {v: float(np.mean(verdict == v)) for v in (BETTER, WORSE, EQUIVALENT, UNDECIDED)} | \
        {"mean_seeds": float(used.mean())}


def naive_false_verdicts(looks: tuple[int, ...], paths: int = 20_000, seed: int = 0, noise=None) -> float:
    """Share of no-difference studies that a t-test at 5% on every look, stopping at the first p < 0.05,
    calls better or worse: what looking again and again without a design does."""
    rng = np.random.default_rng(seed)
    x = (noise or (lambda g, shape: g.standard_normal(shape)))(rng, (paths, looks[-1]))
    hit = np.zeros(paths, dtype=bool)
    for n in looks:
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # tied rows: no statistic, counted as no rejection
            p = stats.ttest_1samp(x[:, :n], 0.0, axis=1).pvalue
        hit |= np.nan_to_num(p, nan=1.0) < 0.05
    return float(hit.mean())


@dataclass(frozen=True)
class ComparisonLooks:
    """One comparison's looks so far, and where it stands."""

    variant: str
    baseline: str
    metric: str
    looks: list[Look]
    decision: str  # better | worse | equivalent | undecided, or continue while looks remain
    smallest: float
    alpha: float  # this comparison's share of the study's 5% (Bonferroni over the comparisons)
    spending: str
    design: tuple[Boundary, ...]


def study_looks(results) -> list[ComparisonLooks]:
    """Each comparison's looks from the stored runs: the same decisions whenever they are computed.

    A look counts once every run of its first n seeds has finished (done, diverged or failed) on both
    sides; runs that did not finish done are left out of the pairs (the boundary keeps its nominal level).
    A comparison stops at its first decision.
    """
    from .resolution import resolution  # the floor of the spread, per metric
    from .study import counts  # runs whose numbers enter the statistics

    seq = results.sequential
    if not seq:
        return []
    others = [v for v in results.variants if v != results.baseline]
    alpha = ALPHA / max(1, len(others))
    design = boundaries(tuple(seq.looks), alpha, seq.spending)
    higher_is_better = METRICS[seq.metric]

    def finals(variant: str) -> tuple[dict[int, float], set[int]]:
        values, finished = {}, set()
        for run in results.runs_of(variant):
            if run.status in run_status.ENDED:
                finished.add(run.seed)
            if counts(run) and run.final is not None:
                values[run.seed] = float(getattr(run.final, seq.metric))
        return values, finished

    base_values, base_finished = finals(results.baseline)
    out = []
    for variant in others:
        values, finished = finals(variant)
        looks = []
        for k, b in enumerate(design):
            seeds = results.seeds[: b.n]
            if len(seeds) < b.n or not set(seeds) <= (finished & base_finished):
                break
            pairs = [s for s in seeds if s in values and s in base_values]
            if len(pairs) < 2:
                looks.append(Look(len(pairs), math.nan, -math.inf, math.inf, math.nan, b, CONTINUE))
                continue
            diffs = np.array([values[s] - base_values[s] for s in pairs])
            floor = resolution(seq.metric, results, np.mean([values[s] for s in pairs]),
                               np.mean([base_values[s] for s in pairs]))
            look = decide(diffs, b, seq.smallest_difference, last=k == len(design) - 1, floor=floor)
            if not higher_is_better and look.decision in (BETTER, WORSE):  # a lower loss is better
                look = dataclasses.replace(look, decision=WORSE if look.decision == BETTER else BETTER)
            looks.append(look)
            if look.decision != CONTINUE:
                break
        decision = looks[-1].decision if looks else CONTINUE
        out.append(ComparisonLooks(variant, results.baseline, seq.metric, looks, decision, seq.smallest_difference, alpha,
                                   seq.spending, design))
    return out


def looks_table(results) -> list[dict]:
    """Every look of every comparison as plain rows (the API's DataFrame, `nnstudy show`, exports)."""
    rows = []
    for c in study_looks(results):
        for k, look in enumerate(c.looks, 1):
            rows.append({"variant": c.variant, "baseline": c.baseline, "metric": c.metric, "look": k, "n": look.n,
                         "estimate": look.estimate, "ci_low": look.ci_low, "ci_high": look.ci_high,
                         "p_value": look.p_value, "critical_t": look.boundary.critical_t,
                         "nominal_p": look.boundary.nominal_p, "decision": look.decision,
                         "smallest_difference": c.smallest, "alpha": c.alpha})
    return rows


def seeds_saved(c: ComparisonLooks, paths: int = 20_000) -> dict | None:
    """Seeds this comparison used against the fixed design of equal power, for a true difference of twice
    the smallest worth knowing at the spread seen at its last look: {"used", "fixed", "power"}."""
    last = c.looks[-1] if c.looks else None
    if last is None or last.n < 3 or not math.isfinite(last.ci_high - last.ci_low) or last.ci_high == last.ci_low:
        return None
    sd = (last.ci_high - last.ci_low) / 2 / critical_t(last.boundary, last.n) * math.sqrt(last.n)
    looks = tuple(b.n for b in c.design)
    sim = simulate(looks, 2 * c.smallest, sd, c.smallest, alpha=c.alpha, spending=c.spending, paths=paths)
    power = sim[BETTER]
    return {"used": last.n, "fixed": fixed_design_seeds(power, 2 * c.smallest, sd, alpha=c.alpha), "power": power,
            "expected": sim["mean_seeds"]}


def look_line(c: ComparisonLooks) -> str:
    """'leaky-relu vs relu, look 2 (n=5): +0.12 pp, interval -0.05 to +0.29 pp, |t| > 4.98: continue'."""
    if not c.looks:
        return f"{c.variant} vs {c.baseline}: no complete look yet"
    look = c.looks[-1]
    interval = (f"interval {format_diff(look.ci_low, c.metric)} to {format_diff(look.ci_high, c.metric)}"
                if abs(look.ci_low) != float("inf") else "interval unbounded (too few seeds for this boundary)")
    return (f"{c.variant} vs {c.baseline}, look {len(c.looks)} (n={look.n}): {format_diff(look.estimate, c.metric)}, "
            f"{interval}, boundary |t| > {look.boundary.critical_t:.3g}: {decision_words(c)}")


def decision_words(c: ComparisonLooks) -> str:
    """'better', 'equivalent within ±0.10 pp', 'undecided at n=20', 'continue'."""
    n = c.looks[-1].n if c.looks else 0
    return {"equivalent": f"equivalent within ±{format_diff(c.smallest, c.metric, signed=False)}",
            "undecided": f"undecided at n={n}"}.get(c.decision, c.decision)


def fixed_design_seeds(power: float, difference: float, sd: float, alpha: float = 0.05) -> int | None:
    """Fewest seeds a fixed-size paired t-test (two-sided, level alpha) needs for `power` at `difference`."""
    if not 0 < power < 1:
        return None
    return recommended_seeds(sd, difference, alpha=alpha, power=power)


__all__ = ["BETTER", "CONTINUE", "EQUIVALENT", "SPENDING", "UNDECIDED", "WORSE", "Boundary", "ComparisonLooks", "Look",
           "boundaries", "critical_t", "decide", "decision_words", "fixed_design_seeds", "look_line", "looks_table", "naive_false_verdicts", "seeds_saved", "simulate",
           "spent_alpha", "study_looks"]
