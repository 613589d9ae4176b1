"""Claims checked: a study's stated expectations against per-seed evidence.

A claim names a metric (`stats/claim_metrics.py`), a variant, and either a
baseline variant (paired by seed) or a fixed value, with a direction
("greater", "less", or "within" a tolerance), and cites its source: a
statement of the reference coursework ("R4.2", quoted from
`config/reference.py`), nnstudy's own addition ("nnstudy"), or a user's text.

- Exact facts: a metric that is the same for every seed by construction
  (parameters, FLOPs, shapes) "holds" or "does not hold" on every seed, at any
  n, and is counted apart from the statistical verdicts.
- Statistical claims are one family: each gets a p-value from the two-sided
  test (`claim_tests.py`: the one evidence rule of `evidence.py`, the t-test
  with the spread at least the metric's resolution; the 95% interval), and
  Holm's method adjusts them
  over the study's claims. A claim is "supported" when its adjusted p is below
  5% and the data lean the claimed way (for "within": the interval lies inside
  the tolerance), "contradicted" when the adjusted p is below 5% the other way,
  else "not shown at n=K seeds". The interval printed beside the verdict is
  the Holm-adjusted one, the interval the verdict was decided on.
- Diverged seeds are handled as in the comparisons: left out (and named);
  a variant diverged on more than half its seeds gets the verdict "diverged".
  Measurements at initialisation (epoch 0) precede any divergence and keep
  every seed.
- True by construction: a claim the study file declares so (`by_construction
  = "why"`: the code fixes its outcome before any data, as zero weights with
  zeroed biases fix zero gradients) is shown "true by construction" with the
  reason when its relation holds on every seed, counted apart and kept out
  of the Holm family: an illustration, never evidence. Where a seed breaks
  it, the declaration was wrong, and the evidence says so ("not shown").
- Fixed before the results: the store keeps each claim's first definition
  (its fields, the compared variants' configs, the seeds, the epochs, the
  metric's version; store/claim_record.py), append-only once the study has
  results; a claim changed after results, there or as its own declared history
  says, is marked revised with what changed and its first definition's verdict
  beside the new one (claim_revisions.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from nnstudy.config.reference import OWN, STATEMENTS, is_reference
from nnstudy.config.schema import claim_key
from nnstudy.registry import CLAIM_METRICS
from nnstudy.store.results import StudyResults

from . import claim_metrics  # noqa: F401  (registers the metrics)
from .claim_metrics import ClaimMetricError
from .claim_revisions import NOT_JUDGED, Revision, judge_first, revisions
from .claim_tests import directional_p, within_p
from . import evidence, factorial
from .paired import ALPHA, holm
from .resolution import describe, metric_step, resolution
from .study import counts, divergence
from .words import format_p

from .labels import BY_CONSTRUCTION, CONTRADICTED, DIVERGED, DOES_NOT_HOLD, HOLDS, NOT_SHOWN, SUPPORTED


@dataclass(frozen=True)
class ClaimResult:
    text: str
    source: str  # "R4.2", "nnstudy" or a user's text
    quote: str  # the coursework statement, when the source is one
    reading: str  # which reading of the statement this claim tests ("" when it has one)
    rationale: str  # why the threshold, tolerance or value is what it is
    metric: str
    label: str
    variant: str
    reference: str  # the baseline variant's name or the fixed value
    direction: str  # "greater than", "less than", "within 0.35 of"
    epoch: int
    kind: str  # "statistical", "exact" or "by construction"
    n: int
    variant_mean: float
    reference_mean: float
    diff_mean: float
    ci_low: float  # 95% interval of the mean difference
    ci_high: float
    p_value: float  # the claim's own p (nan for exact facts and undecidable claims)
    p_holm: float  # adjusted over the study's statistical claims
    verdict: str
    evidence: str  # one sentence with the numbers
    revised: bool = False  # its definition changed after the study had results
    added_after_results: bool = False
    first: "ClaimResult | None" = None  # the first definition's result, when revised
    key: str = ""  # its identity in the store: its id, else its text
    withdrawn: bool = False  # dropped from the study after results (withdrawn_claims)
    changes: tuple[str, ...] = ()  # what changed after results, in words ("seeds 5 -> 10")
    first_text: str = ""  # the words it was first recorded in, where it was reworded
    floor: float = 0.0  # the metric's resolution: the least spread the test uses
    sd: float = math.nan  # the per-seed differences' sample sd (the test's spread is the larger of it and `floor`)
    test: str = ""  # the test that decided, in words
    adj_low: float = math.nan  # the Holm-adjusted interval the verdict was decided on
    adj_high: float = math.nan

    @property
    def own(self) -> bool:
        return self.source == OWN


def metric_values(results: StudyResults, claim: dict, variant: str, epoch: int) -> dict[int, float]:
    """Per-seed values of a claim's metric for one variant: failed runs left out, and diverged ones
    after initialisation (epoch >= 1)."""
    name, _, arg = claim["metric"].partition("@")
    fn = CLAIM_METRICS.get(name)
    out = {}
    for run in results.runs_of(variant):
        if run.status == "failed" or (epoch > 0 and not counts(run)):
            continue
        value = fn(run, epoch, claim, arg, results)
        if value is not None and math.isfinite(value):
            out[run.seed] = float(value)
    return out


def check_claims(results: StudyResults) -> list[ClaimResult]:
    """Every claim of the study, in file order, with its evidence and verdict, and its record (revised, added
    after results, reworded; claim_revisions.py) with its first definition's verdict where it was revised."""
    found = revisions(results)
    firsts = judge_first(results, found, _family_on, _not_judged)
    return [_with_record(result, found[claim_key(claim)], firsts)
            for claim, result in zip(results.claims, _family(results, results.claims))]


def withdrawn_claims(results: StudyResults) -> list[ClaimResult]:
    """Claims dropped from the study after it had results, each judged by its first definition."""
    found = revisions(results)
    if not any(r.withdrawn for r in found.values()):
        return []
    firsts = judge_first(results, found, _family_on, _not_judged)
    return [_with_record(firsts[r.key], r, {}) for r in found.values() if r.withdrawn]


def _with_record(result: ClaimResult, record: Revision, firsts: dict) -> ClaimResult:
    return dataclasses.replace(result, key=record.key, revised=record.revised, withdrawn=record.withdrawn,
                               added_after_results=record.added_after_results, changes=record.changes,
                               first_text=record.first_text, first=firsts.get(record.key) if record.revised else None)


def _not_judged(claim: dict, why: str, stored: dict | None = None) -> ClaimResult:
    """A first definition that cannot be judged on these runs: the verdict the store kept for it before it changed,
    where it kept one, else "not judged again"; either way with why."""
    name = claim["metric"].partition("@")[0]
    entry = CLAIM_METRICS.entry(name) if name in CLAIM_METRICS else SimpleNamespace(meta={})  # a metric since removed
    side = claim.get("variant") or f"effect of {claim['effect']['factor']}"  # no runs to name its levels from
    base = _result_base(claim, entry, claim.get("epoch") or 0, "statistical", side)
    if stored:
        return dataclasses.replace(base, verdict=stored["verdict"], evidence=f"as judged before it changed (the "
                                   f"store kept it; it cannot be judged on these runs: {why}): {stored['evidence']}")
    return dataclasses.replace(base, verdict=NOT_JUDGED, evidence=f"cannot be judged on these runs: {why}")


def _family(results: StudyResults, claims: list[dict]) -> list[ClaimResult]:
    return _family_on(lambda i: results, claims)


def _family_on(results_of, claims: list[dict]) -> list[ClaimResult]:
    """Evaluate claims (the i-th on `results_of(i)`) and apply Holm over the statistical ones among them."""
    evaluated = [_evaluate(results_of(i), c) for i, c in enumerate(claims)]
    statistical = [i for i, r in enumerate(evaluated) if r.kind == "statistical" and math.isfinite(r.p_value)]
    adjusted = holm([evaluated[i].p_value for i in statistical])
    for i, p in zip(statistical, adjusted):
        evaluated[i] = _decide(evaluated[i], p, claims[i])
    return evaluated


def _epoch(results: StudyResults, claim: dict) -> int:
    if claim.get("epoch") is not None:
        return int(claim["epoch"])
    return min((max((r.history[-1].epoch for r in results.runs_of(name) if r.history), default=0)
                for name in _variants(results, claim)), default=0)


def _variants(results: StudyResults, claim: dict) -> list[str]:
    """The variants a claim reads: its variant and baseline, or the grid cells of its effect."""
    if claim.get("effect"):
        return sorted({name for term in factorial.effect_terms(results, claim["effect"]) for name, _ in term})
    return [claim["variant"]] + ([claim["baseline"]] if claim.get("baseline") is not None else [])


def _sides(results: StudyResults, claim: dict, epoch: int) -> tuple[dict, dict, float | None]:
    """Per-seed values of the claim's side and of what it is compared with, and, for an effect, the floor of its
    spread (the metric's step over the number of differences the contrast averages, as factorial.py judges it)."""
    if claim.get("effect"):
        terms = factorial.effect_terms(results, claim["effect"])
        cells = {name: metric_values(results, claim, name, epoch) for name in _variants(results, claim)}
        v = factorial.contrast_values(cells, terms)
        step = metric_step(claim["metric"], results)
        if step is None:
            step = evidence.relative_floor(*[x for by_seed in cells.values() for x in by_seed.values()])
        return v, {seed: float(claim["value"]) for seed in v}, step / max(1, len(terms))
    v = metric_values(results, claim, claim["variant"], epoch)
    if claim.get("baseline") is not None:
        return v, metric_values(results, claim, claim["baseline"], epoch), None
    return v, {seed: float(claim["value"]) for seed in v}, None


def _evaluate(results: StudyResults, claim: dict) -> ClaimResult:
    """One claim's numbers and, for exact facts and undecidable claims, its verdict (else decided with Holm)."""
    epoch = _epoch(results, claim)
    entry = CLAIM_METRICS.entry(claim["metric"].partition("@")[0])
    exact = bool(entry.meta.get("exact"))
    construction = claim.get("by_construction") or ""
    base = _result_base(claim, entry, epoch, "exact" if exact else "by construction" if construction else "statistical",
                        _side_name(claim, results))
    try:
        v, b, effect_floor = _sides(results, claim, epoch)
    except ClaimMetricError as exc:
        return dataclasses.replace(base, verdict=NOT_SHOWN, evidence=f"cannot be measured here: {exc}")
    why = [] if epoch == 0 or exact else [t for t in map(lambda name: divergence(results, name),
                                                         _variants(results, claim)) if t]
    if why:
        return dataclasses.replace(base, verdict=DIVERGED, evidence="; ".join(why))
    seeds = sorted(set(v) & set(b))
    vv, bb = np.array([v[s] for s in seeds]), np.array([b[s] for s in seeds])
    left_out = _left_out(results, claim, epoch, seeds)
    numbers = dataclasses.replace(base, n=len(seeds), variant_mean=_m(vv), reference_mean=_m(bb), diff_mean=_m(vv - bb))
    if exact or construction:
        fact = _exact(numbers, claim, vv, bb, fraction=entry.meta.get("fraction", False))
        return fact if exact else _by_construction(fact, construction)
    if len(seeds) < 2:
        return dataclasses.replace(numbers, verdict=NOT_SHOWN, evidence=f"only {len(seeds)} seed(s) with this metric; "
                                                                        f"a verdict needs at least 2{left_out}")
    d = vv - bb
    floor = effect_floor if effect_floor is not None else \
        resolution(claim["metric"], results, numbers.variant_mean, numbers.reference_mean)
    low, high = evidence.interval(d, floor)
    # The smaller of the two p-values is the side the data lean to; `_decide` reads that side from the mean.
    p = float(min(within_p(d, claim.get("tolerance", 0.0), floor))) if claim["direction"] == "within" \
        else float(directional_p(d, floor)[0])
    sd = float(d.std(ddof=1))
    test = "paired t-test" + (f", spread taken as the resolution, {describe(claim['metric'], results, floor)}: the "
                              f"seeds agreed more closely than that" if sd < floor else "")
    return dataclasses.replace(numbers, ci_low=low, ci_high=high, p_value=p, verdict=NOT_SHOWN, floor=floor, sd=sd,
                               test=test, evidence=_evidence(numbers, claim, entry) + left_out)


def _decide(r: ClaimResult, p_holm: float, claim: dict) -> ClaimResult:
    d = r.diff_mean
    if claim["direction"] == "within":
        tol = claim.get("tolerance", 0.0)
        towards = abs(d) <= tol
    else:
        towards = (d > 0) == (claim["direction"] == "greater") and d != 0
    verdict = (SUPPORTED if towards else CONTRADICTED) if p_holm < ALPHA else NOT_SHOWN
    low, high = _adjusted_interval(r, p_holm)
    diff = _diff_text(bool(CLAIM_METRICS.entry(r.metric.partition("@")[0]).meta.get("fraction")))
    name = "Holm-adjusted 95% CI" if p_holm > r.p_value else "95% CI"
    text = (f"{r.evidence}; {name} {diff(low)} to {diff(high)}; {format_p(r.p_value)}, Holm-adjusted over the "
            f"study's claims {format_p(p_holm)}; {r.test}")
    if verdict == NOT_SHOWN:
        text += f"; not shown at n={r.n} seeds"
    return dataclasses.replace(r, p_holm=p_holm, verdict=verdict, evidence=text, adj_low=low, adj_high=high)


def _adjusted_interval(r: ClaimResult, p_holm: float) -> tuple[float, float]:
    """The interval at the level Holm's method tested the claim at: it decides exactly as ``p_holm`` does."""
    return evidence.adjusted_interval(r.diff_mean, r.sd, r.floor, r.n, r.p_value, p_holm)


def _exact(r: ClaimResult, claim: dict, v: np.ndarray, b: np.ndarray, fraction: bool) -> ClaimResult:
    if len(v) == 0:
        return dataclasses.replace(r, verdict=NOT_SHOWN, evidence="no run recorded this value (were probes off?)")
    tol = claim.get("tolerance", 0.0)
    direction = claim["direction"]
    ok = (v > b) if direction == "greater" else (v < b) if direction == "less" else (np.abs(v - b) <= tol)
    shown = _shown(fraction)
    against = f"{claim['baseline']} {_range(b, shown)}" if claim.get("baseline") is not None else _range(b, shown)
    evidence = f"{r.variant} {_range(v, shown)} vs {against}"
    if not ok.all():
        evidence += f"; holds on {int(ok.sum())} of {len(ok)} seeds"
    return dataclasses.replace(r, verdict=HOLDS if ok.all() else DOES_NOT_HOLD, evidence=evidence,
                               p_value=math.nan, p_holm=math.nan)


def _by_construction(fact: ClaimResult, why: str) -> ClaimResult:
    """A declared construction: confirmed when the relation holds on every seed, else the declaration is wrong."""
    if fact.verdict == HOLDS:
        return dataclasses.replace(fact, verdict=BY_CONSTRUCTION, test="checked on every seed, not tested",
                                   evidence=f"true by construction: {why} (an illustration, not evidence; on every "
                                            f"seed: {fact.evidence})")
    if fact.verdict != DOES_NOT_HOLD:
        return fact  # nothing recorded to check it on
    return dataclasses.replace(fact, verdict=NOT_SHOWN, evidence=f"declared true by construction ({why}), but the "
                                                                 f"data do not bear it out: {fact.evidence}")


def _range(values: np.ndarray, shown) -> str:
    lo, hi = float(values.min()), float(values.max())
    return shown(lo) + ("" if lo == hi else f" to {shown(hi)} (varies by seed)")


def _result_base(claim: dict, entry, epoch: int, kind: str, side: str) -> ClaimResult:
    fraction = entry.meta.get("fraction", False)
    tol = claim.get("tolerance", 0.0) or 0.0
    relation = {"greater": "greater than", "less": "less than",
                "within": f"within {f'{100 * tol:.2f} pp' if fraction else f'{tol:g}'} of"}[claim["direction"]]
    source = claim.get("source", "") or ""
    nan = math.nan
    return ClaimResult(
        text=claim["text"], source=source, quote=STATEMENTS.get(source, "") if is_reference(source) else "",
        reading=claim.get("reading") or "", rationale=claim.get("rationale") or "", metric=claim["metric"],
        label=entry.meta.get("label", ""), variant=side,
        reference=claim["baseline"] if claim.get("baseline") is not None else f"{claim['value']:g}",
        direction=relation, epoch=epoch, kind=kind, n=0, variant_mean=nan, reference_mean=nan, diff_mean=nan,
        ci_low=nan, ci_high=nan, p_value=nan, p_holm=nan, verdict=NOT_SHOWN, evidence="")


def _side_name(claim: dict, results: StudyResults) -> str:
    """The claim's variant, or its effect as the factorial section names it ("effect init: xavier vs default")."""
    return "effect " + factorial.effect_label(claim["effect"], results) if claim.get("effect") else claim["variant"]


def _diff_text(fraction: bool):
    return (lambda x: f"{100 * x:+.2f} pp") if fraction else (lambda x: f"{x:+.4g}")


def _evidence(r: ClaimResult, claim: dict, entry) -> str:
    fraction = entry.meta.get("fraction", False)
    if claim.get("effect"):  # an effect is a difference already: in pp against the value (0: no effect)
        diff = _diff_text(fraction)
        return f"{r.variant} {diff(r.variant_mean)} against {diff(r.reference_mean)}, n={r.n} seeds"
    shown = _shown(fraction)
    against = f"{claim['baseline']} {shown(r.reference_mean)}" if claim.get("baseline") is not None \
        else shown(r.reference_mean)
    return f"{r.variant} {shown(r.variant_mean)} vs {against}: difference {_diff_text(fraction)(r.diff_mean)}, n={r.n} seeds"


def _left_out(results: StudyResults, claim: dict, epoch: int, seeds: list[int]) -> str:
    if epoch == 0:
        return ""
    gone = sorted({(r.seed, r.variant) for name in _variants(results, claim) for r in results.runs_of(name)
                   if r.status == "diverged"})
    if not gone:
        return ""
    return "; left out (diverged): " + ", ".join(f"seed {s} ({v})" for s, v in gone)


def _shown(fraction: bool):
    if fraction:
        return lambda x: f"{100 * x:.2f}%"
    return lambda x: f"{x:,.0f}" if math.isfinite(x) and float(x).is_integer() and abs(x) >= 1000 else f"{x:.4g}"


def _m(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


__all__ = ["BY_CONSTRUCTION", "CONTRADICTED", "DIVERGED", "DOES_NOT_HOLD", "HOLDS", "NOT_JUDGED", "NOT_SHOWN", "SUPPORTED",
           "ClaimResult",
           "check_claims", "metric_values", "withdrawn_claims"]
