"""Factorial analysis of a grid: each factor's main effect and each pair's interaction, paired by seed.

Every cell of a grid runs on the same seeds, so each contrast is taken within a seed, where the
seed's own effect (initialisation, data order) cancels, as in a paired comparison:

  main effect of level a of factor A, against A's first level a0:
      per seed, the mean over the other factors' combinations o (where both cells exist) of
      y(a, o) - y(a0, o)
  interaction of (a vs a0) of A with (b vs b0) of B:
      per seed, the mean over the remaining factors' combinations o (where all four cells exist) of
      [y(a, b, o) - y(a0, b, o)] - [y(a, b0, o) - y(a0, b0, o)]
      that is, how much a's effect changes between B's first level b0 and level b.

A factor of more than two levels gives one contrast per level against its first level (no omnibus
F test: each contrast says which level differs, and Holm keeps the family honest). Each contrast's
per-seed values are judged by nnstudy's one evidence rule (stats/evidence.py): a one-sample t-test
against zero and a 95% t interval with the spread taken as at least the contrast's resolution (the
metric's step, e.g. one test image, over the number of differences the contrast averages), and the smallest effect these seeds detect with 80% power at 5%
(before Holm). Holm runs over every contrast returned: all factors, pairs, metrics and epochs. A
main effect is "better"/"worse" and an interaction "interaction" only when its Holm p < 0.05 and its
interval excludes zero, the rule of every comparison nnstudy makes; a seed missing any cell a
contrast needs (failed, diverged, not yet run) is left out of that contrast.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from nnstudy.store.results import METRICS, StudyResults

from . import evidence
from .paired import ALPHA, BETTER, NO_DIFFERENCE, WORSE, holm, minimum_detectable_difference
from .resolution import metric_step
from .study import counts
from .words import format_ci, format_diff, format_p, metric_label

INTERACTION = "interaction"
NO_INTERACTION = "no detectable interaction"
TOO_FEW = "too few seeds"


@dataclass(frozen=True)
class Effect:
    """One contrast of a factorial analysis, in the metric's own unit (accuracies are fractions)."""

    kind: str  # "main" or "interaction"
    factor: str  # the setting whose levels are contrasted, e.g. "model.init"
    level: str
    reference: str  # the factor's first level
    by: str | None  # an interaction: the other factor, over whose levels the effect changes
    by_level: str | None
    by_reference: str | None
    metric: str
    epoch: int
    n: int  # seeds with every cell the contrast needs
    estimate: float
    sd: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    mde: float  # smallest |effect| these seeds detect with 80% power at 5%
    verdict: str
    sentence: str
    # An interaction: the factor's effect (level vs reference) at `by_reference` and at `by_level`, mean over seeds.
    simple: dict = field(default_factory=dict)
    floor: float = 0.0  # the least spread the test uses: the contrast's resolution
    adj_low: float = math.nan  # the interval at the level Holm tested it at: the one the verdict was decided on
    adj_high: float = math.nan


def factors_of(results: StudyResults) -> dict[str, list]:
    """The grid's factors with two or more levels (path -> values); {} for a study without a grid."""
    grid = results.grid or {}
    return {path: values for path, values in (grid.get("factors") or {}).items() if len(values) >= 2}


def is_factorial(results: StudyResults) -> bool:
    """A grid of two or more factors with two or more levels each: main effects and interactions apply."""
    return len(factors_of(results)) >= 2


def factorial(results: StudyResults, metrics=("test_acc",), epochs=None) -> list[Effect]:
    """Every main effect and pairwise interaction of the grid, at each report epoch; [] without a factorial grid."""
    factors = factors_of(results)
    if len(factors) < 2:
        return []
    cells = _cells(results, factors)
    effects = []
    for epoch in epochs or results.report_epochs:
        for metric in metrics:
            values = _values(results, cells, metric, epoch)
            step = metric_step(metric, results)
            if step is None:  # a metric with no step: known to the digits the report prints, as in comparisons
                step = evidence.relative_floor(*[v for by_seed in values.values() for v in by_seed.values()])
            effects += _main_effects(factors, cells, values, metric, epoch, step)
            effects += _interactions(factors, cells, values, metric, epoch, step)
    adjusted = holm([e.p_value for e in effects])
    return [_decide(dataclasses.replace(e, p_holm=p)) for e, p in zip(effects, adjusted)]


def level_text(value) -> str:
    """A level as people read it: relu, 0.01, [64, 32]."""
    return value if isinstance(value, str) else json.dumps(value)


def short(path: str) -> str:
    """"model.init" -> "init"."""
    return path.rsplit(".", 1)[-1]


def _cells(results: StudyResults, factors: dict[str, list]) -> dict[tuple, str]:
    """(level text of each factor, in grid order) -> cell name, for the cells of the grid."""
    out = {}
    for name, coords in results.grid["cells"].items():
        if name in results.variants and all(path in coords for path in factors):
            out[tuple(level_text(coords[path]) for path in factors)] = name
    return out


def _values(results: StudyResults, cells: dict[tuple, str], metric: str, epoch: int) -> dict[str, dict[int, float]]:
    out = {}
    for name in cells.values():
        rows = {r.seed: r.at_epoch(epoch) for r in results.runs_of(name) if counts(r)}
        out[name] = {seed: float(getattr(row, metric)) for seed, row in rows.items() if row is not None}
    return out


def _main_effects(factors, cells, values, metric, epoch, step: float) -> list[Effect]:
    paths = list(factors)
    effects = []
    for path in paths:
        levels = [level_text(v) for v in factors[path]]
        for level in levels[1:]:
            terms = main_terms(factors, cells, path, level, levels[0])
            effects.append(_effect("main", path, level, levels[0], None, None, None, metric, epoch,
                                   _per_seed(values, terms), floor=step / max(1, len(terms))))  # a mean of differences
    return effects


def _interactions(factors, cells, values, metric, epoch, step: float) -> list[Effect]:
    """Each pair (A, B) in grid order: how B's effect depends on A ("the effect of init depends on the activation")."""
    paths = list(factors)
    effects = []
    for first, second in itertools.combinations(paths, 2):
        a_levels = [level_text(v) for v in factors[first]]
        b_levels = [level_text(v) for v in factors[second]]
        for a, b in itertools.product(a_levels[1:], b_levels[1:]):
            a0, b0 = a_levels[0], b_levels[0]
            quads = interaction_terms(factors, cells, second, b, b0, first, a, a0)
            # The simple effects the interaction contrasts: b's effect at a (ab - ab0) and at a0 (a0b - a0b0).
            simple = {a0: -_mean(_per_seed(values, [q[2:] for q in quads])),
                      a: _mean(_per_seed(values, [q[:2] for q in quads]))}
            effects.append(_effect(INTERACTION, second, b, b0, first, a, a0, metric, epoch, _per_seed(values, quads),
                                   simple, step / max(1, len(quads))))
    return effects


def main_terms(factors, cells, factor: str, level: str, reference: str) -> list[tuple]:
    """The differences cell(factor=level) - cell(factor=reference) over every combination of the other factors
    where both cells exist: a main effect is their mean."""
    i = list(factors).index(factor)
    return [((cells[_with(key, i, level)], 1.0), (cells[key], -1.0)) for key in cells
            if key[i] == reference and _with(key, i, level) in cells]


def interaction_terms(factors, cells, factor: str, level: str, reference: str, by: str, by_level: str,
                      by_reference: str) -> list[tuple]:
    """The differences of differences [y(b, a) - y(b0, a)] - [y(b, a0) - y(b0, a0)] of `factor` (b vs b0) between
    `by`'s levels (a vs a0), over every combination of the other factors where all four cells exist; each term
    lists its cells in that order, so term[:2] is b's effect at a and term[2:] minus b's effect at a0."""
    i, j = list(factors).index(factor), list(factors).index(by)
    quads = []
    for key in cells:
        if key[i] != reference or key[j] != by_reference:
            continue
        corners = [_with(_with(key, j, x), i, y) for x, y in ((by_level, level), (by_level, reference),
                                                              (by_reference, level), (by_reference, reference))]
        if all(c in cells for c in corners):
            ab, ab0, a0b, a0b0 = (cells[c] for c in corners)
            quads.append(((ab, 1.0), (ab0, -1.0), (a0b, -1.0), (a0b0, 1.0)))
    return quads


def contrast_values(values: dict[str, dict[int, float]], terms: list[tuple]) -> dict[int, float]:
    """Per seed, the contrast `terms` describes (as `main_terms`/`interaction_terms` return): seed -> value."""
    names = {name for term in terms for name, _ in term}
    if not terms:
        return {}
    seeds = sorted(set.intersection(*(set(values.get(n, {})) for n in names)))
    return {s: float(np.mean([sum(w * values[n][s] for n, w in term) for term in terms])) for s in seeds}


def effect_terms(results: StudyResults, effect: dict) -> list[tuple]:
    """The terms of the contrast a claim names (config.schema.EffectConfig's fields): a main effect's differences
    or an interaction's differences of differences."""
    factors = factors_of(results)
    cells = _cells(results, factors)
    e = _resolved(effect, factors)
    if e.by is None:
        return main_terms(factors, cells, e.factor, e.level, e.reference)
    return interaction_terms(factors, cells, e.factor, e.level, e.reference, e.by, e.by_level, e.by_reference)


def effect_label(effect: dict, results: StudyResults) -> str:
    """A claim's effect named as the factorial section names it: "init: xavier vs default"."""
    return effect_name(_resolved(effect, factors_of(results)))


def _resolved(effect: dict, factors: dict[str, list]) -> SimpleNamespace:
    """An effect's fields with levels as text, those left out taken as their factor's first level."""
    def level(key: str, path: str | None) -> str | None:
        if path is None:
            return None
        value = effect.get(key)
        return level_text(value if value is not None else factors.get(path, ["?"])[0])

    factor, by = effect["factor"], effect.get("by")
    return SimpleNamespace(kind=INTERACTION if by else "main", factor=factor, level=level("level", factor),
                           reference=level("reference", factor), by=by, by_level=level("by_level", by),
                           by_reference=level("by_reference", by))


def _with(key: tuple, index: int, level: str) -> tuple:
    return key[:index] + (level,) + key[index + 1:]


def _per_seed(values: dict[str, dict[int, float]], terms: list[tuple]) -> np.ndarray:
    """Per seed, the mean over `terms` of sum(weight * value); seeds missing any cell named are left out."""
    return np.array(list(contrast_values(values, terms).values()), dtype=float)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def _effect(kind, factor, level, reference, by, by_level, by_reference, metric, epoch, per_seed, simple=None,
            floor: float = 0.0) -> Effect:
    n = int(per_seed.size)
    nan = math.nan
    if n < 2:
        return Effect(kind, factor, level, reference, by, by_level, by_reference, metric, epoch, n, _mean(per_seed),
                      nan, nan, nan, nan, nan, nan, TOO_FEW, "", simple or {})
    mean, sd = float(per_seed.mean()), float(per_seed.std(ddof=1))
    # The evidence rule of every comparison: the spread at least the metric's resolution (evidence.py).
    low, high = evidence.interval(per_seed, floor)
    p = float(evidence.p_value(per_seed, floor))
    return Effect(kind, factor, level, reference, by, by_level, by_reference, metric, epoch, n, mean, sd, low, high,
                  p, nan, minimum_detectable_difference(sd, n), "", "", simple or {}, floor)


def _decide(e: Effect) -> Effect:
    if e.verdict == TOO_FEW:
        return dataclasses.replace(e, sentence=f"{_name(e)}: only {e.n} seed(s) with every cell it needs; a contrast "
                                               f"needs at least 2.")
    low, high = evidence.adjusted_interval(e.estimate, e.sd, e.floor, e.n, e.p_value, e.p_holm)
    e = dataclasses.replace(e, adj_low=low, adj_high=high)
    shown = e.p_holm < ALPHA and (e.ci_low > 0 or e.ci_high < 0)
    if e.kind == INTERACTION:
        verdict = INTERACTION if shown else NO_INTERACTION
    else:
        better = (e.estimate > 0) == METRICS.get(e.metric, True)
        verdict = (BETTER if better else WORSE) if shown else NO_DIFFERENCE
    return dataclasses.replace(e, verdict=verdict, sentence=_sentence(e, verdict))


def _name(e: Effect) -> str:
    if e.kind == INTERACTION:
        return f"interaction {short(e.by)} x {short(e.factor)} ({e.level} vs {e.reference}, {e.by_level} vs " \
               f"{e.by_reference})"
    return f"main effect of {short(e.factor)} ({e.level} vs {e.reference})"


def effect_name(e) -> str:
    """"init: xavier vs default" or "activation x init: (sigmoid vs relu) x (xavier vs default)"."""
    if e.kind == INTERACTION:
        return f"{short(e.by)} x {short(e.factor)}: ({e.by_level} vs {e.by_reference}) x ({e.level} vs {e.reference})"
    return f"{short(e.factor)}: {e.level} vs {e.reference}"


def _sentence(e: Effect, verdict: str) -> str:
    m = e.metric
    numbers = (f"{format_diff(e.estimate, m)}, {interval_name(e)} {format_ci(e.adj_low, e.adj_high, m)}, Holm "
             f"{format_p(e.p_holm)}, n={e.n}")
    where = f" ({metric_label(m)}, epoch {e.epoch})"
    if e.kind != INTERACTION:
        head = f"{e.level} instead of {e.reference} ({short(e.factor)}), averaged over the other factors{where}"
        return f"{head}: {verdict} ({numbers})."
    gains = (f"{e.level} gains {format_diff(e.simple.get(e.by_level, math.nan), m)} with {e.by_level}, "
             f"{format_diff(e.simple.get(e.by_reference, math.nan), m)} with {e.by_reference}")
    if verdict == INTERACTION:
        return f"the effect of {short(e.factor)} depends on the {short(e.by)}{where}: {gains} (difference {numbers})."
    detect = (f"; {e.n} seeds detect an interaction of {format_diff(e.mde, m, signed=False)} or more with 80% power"
              if math.isfinite(e.mde) else "")
    return f"no detectable interaction of {short(e.by)} and {short(e.factor)}{where}: {gains} (difference {numbers})" \
           f"{detect}."


def interval_name(e: Effect) -> str:
    """What the interval beside a verdict is: Holm's, unless Holm left the p as it was."""
    return "Holm-adjusted 95% CI" if e.p_holm > e.p_value else "95% CI"


def effects_table(effects: list[Effect]):
    """The effects as a tidy pandas DataFrame: one row per contrast (simple effects as two columns)."""
    import pandas as pd

    rows = []
    for e in effects:
        row = {k: v for k, v in dataclasses.asdict(e).items() if k != "simple"}
        row["effect_at_by_reference"] = e.simple.get(e.by_reference, math.nan) if e.by_reference else math.nan
        row["effect_at_by_level"] = e.simple.get(e.by_level, math.nan) if e.by_level else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def pair_means(results: StudyResults, first: str, second: str, metric: str, epoch: int) -> dict[tuple, np.ndarray]:
    """(level of `first`, level of `second`) -> per-seed values averaged over the other factors' levels:
    the points of an interaction plot (a seed missing any cell of the average is left out of that point)."""
    factors = factors_of(results)
    cells = _cells(results, factors)
    values = _values(results, cells, metric, epoch)
    i, j = list(factors).index(first), list(factors).index(second)
    out = {}
    for a, b in itertools.product(factors[first], factors[second]):
        a, b = level_text(a), level_text(b)
        terms = [((name, 1.0),) for key, name in cells.items() if key[i] == a and key[j] == b]
        out[(a, b)] = _per_seed(values, terms)
    return out
