"""The factorial analysis on hand-made per-seed numbers whose effects are known by construction."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from nnstudy.history import EpochRow
from nnstudy.stats.factorial import INTERACTION, NO_INTERACTION, effects_table, factorial, is_factorial
from nnstudy.store.results import RunResult, StudyResults

ACT = ["relu", "sigmoid"]
INIT = ["default", "xavier"]


def grid_results(value, factors=None, seeds=range(8), exclude=()) -> StudyResults:
    """A study whose cell (levels...) on seed s has test accuracy value(levels, s), one epoch."""
    factors = factors or {"model.activation": ACT, "model.init": INIT}
    cells, runs = {}, []
    for levels in itertools.product(*factors.values()):
        name = "-".join(levels)
        if name in exclude:
            continue
        cells[name] = dict(zip(factors, levels))
        for s in seeds:
            acc = float(value(levels, s))
            row = EpochRow(epoch=1, train_loss=1.0, train_acc=acc, test_loss=1.0, test_acc=acc, lr=0.1, seconds=1.0)
            runs.append(RunResult(run_id=f"{name}-{s}", variant=name, seed=s, status="done", config={}, history=[row]))
    grid = {"factors": factors, "cells": cells, "exclude": [], "max_cells": 64}
    return StudyResults("f", "", list(cells), next(iter(cells)), list(seeds), [1], ["a"], np.zeros(0), {}, runs,
                        out_dir=None, grid=grid)


def seed_noise(s: int, levels=(), scale: float = 0.002) -> float:
    """Deterministic per-(seed, cell) noise, with a seed effect shared by every cell of that seed."""
    rng = np.random.default_rng([s, *[zlib.crc32(x.encode()) for x in levels]])
    return 0.01 * (s % 3) + scale * rng.standard_normal()


def by_kind(effects, kind):
    return [e for e in effects if e.kind == kind]


def test_interaction_found_when_the_effect_of_init_differs_by_activation():
    # xavier gains 5 pp with sigmoid and 0.5 pp with relu: an interaction of +4.5 pp.
    gain = {"relu": 0.005, "sigmoid": 0.05}

    def acc(levels, s):
        act, init = levels
        return 0.9 - (0.03 if act == "sigmoid" else 0) + (gain[act] if init == "xavier" else 0) + seed_noise(s, levels)

    effects = factorial(grid_results(acc))
    (inter,) = by_kind(effects, INTERACTION)
    assert inter.verdict == INTERACTION
    assert inter.estimate == pytest.approx(0.045, abs=0.004)
    assert inter.simple["sigmoid"] == pytest.approx(0.05, abs=0.004)
    assert inter.simple["relu"] == pytest.approx(0.005, abs=0.004)
    assert inter.sentence.startswith("the effect of init depends on the activation")
    assert "xavier gains +5." in inter.sentence and "with sigmoid" in inter.sentence
    mains = {e.factor: e for e in by_kind(effects, "main")}
    assert mains["model.init"].verdict == "better"
    assert mains["model.init"].estimate == pytest.approx((0.05 + 0.005) / 2, abs=0.004)
    assert mains["model.activation"].verdict == "worse"  # sigmoid below relu, on average


def test_no_detectable_interaction_when_the_effects_add_up():
    def acc(levels, s):
        act, init = levels
        return 0.9 - (0.03 if act == "sigmoid" else 0) + (0.02 if init == "xavier" else 0) + seed_noise(s, levels)

    effects = factorial(grid_results(acc))
    (inter,) = by_kind(effects, INTERACTION)
    assert inter.verdict == NO_INTERACTION
    assert abs(inter.estimate) < 0.005
    assert inter.ci_low < 0 < inter.ci_high
    assert np.isfinite(inter.mde) and 0 < inter.mde < 0.02
    assert "no detectable interaction of activation and init" in inter.sentence
    assert "8 seeds detect an interaction of" in inter.sentence
    assert all(e.verdict in ("better", "worse") for e in by_kind(effects, "main"))  # both main effects are there


def test_seed_effects_cancel_and_three_levels_contrast_with_the_first():
    # A large seed effect (shared by every cell of a seed) must not hide a small effect: contrasts are within a seed.
    factors = {"model.activation": ["relu", "tanh", "sigmoid"], "model.init": INIT}
    shift = {"relu": 0.0, "tanh": 0.01, "sigmoid": -0.02}

    def acc(levels, s):
        return 0.5 + 0.05 * s + shift[levels[0]] + (0.01 if levels[1] == "xavier" else 0) + seed_noise(s, levels, 1e-4)

    effects = factorial(grid_results(acc, factors))
    mains = {(e.factor, e.level): e for e in by_kind(effects, "main")}
    assert set(mains) == {("model.activation", "tanh"), ("model.activation", "sigmoid"), ("model.init", "xavier")}
    assert mains[("model.activation", "tanh")].reference == "relu"
    assert mains[("model.activation", "tanh")].estimate == pytest.approx(0.01, abs=5e-4)
    assert mains[("model.activation", "sigmoid")].verdict == "worse"
    inters = by_kind(effects, INTERACTION)
    assert [(e.by_level, e.level) for e in inters] == [("tanh", "xavier"), ("sigmoid", "xavier")]
    assert all(e.verdict == NO_INTERACTION for e in inters)
    assert len({e.p_holm for e in effects}) > 1 and all(e.p_holm >= e.p_value for e in effects)  # Holm over all 5


def test_excluded_cells_and_missing_seeds_leave_out_only_what_they_must():
    def acc(levels, s):
        return 0.8 + (0.02 if "xavier" in levels else 0) + seed_noise(s, levels)

    factors = {"model.activation": ["relu", "tanh", "sigmoid"], "model.init": INIT}
    results = grid_results(acc, factors, exclude=("sigmoid-xavier",))
    results.runs = [r for r in results.runs if not (r.variant == "relu-xavier" and r.seed == 0)]
    effects = {(e.kind, e.factor, e.level, e.by_level): e for e in factorial(results)}
    init = effects[("main", "model.init", "xavier", None)]
    assert init.n == 7  # seed 0 lacks relu-xavier
    assert init.estimate == pytest.approx(0.02, abs=0.003)
    assert effects[("main", "model.activation", "sigmoid", None)].n == 8  # sigmoid-default vs relu-default only
    assert effects[(INTERACTION, "model.init", "xavier", "sigmoid")].verdict == "too few seeds"  # no sigmoid-xavier


def test_not_a_factorial_without_two_factors_and_the_table_is_tidy():
    one = grid_results(lambda levels, s: 0.5, {"model.init": INIT})
    assert not is_factorial(one) and factorial(one) == []
    table = effects_table(factorial(grid_results(lambda levels, s: 0.5 + seed_noise(s, levels))))
    assert list(table["kind"]) == ["main", "main", "interaction"]
    assert {"factor", "level", "reference", "by", "estimate", "ci_low", "ci_high", "p_holm", "mde", "verdict",
            "effect_at_by_level", "effect_at_by_reference"} <= set(table.columns)


@pytest.mark.slow
def test_false_interactions_at_most_five_percent():
    """2x2 grids with main effects and no interaction, 5 seeds each: 'interaction' at most 5% of the time."""
    rng = np.random.default_rng(0)
    found, trials = 0, 2000
    for _ in range(trials):
        noise = rng.normal(0, 0.01, (2, 2, 5)) + rng.normal(0, 0.02, 5)  # cell x seed noise, plus a seed effect

        def acc(levels, s, noise=noise):
            i, j = ACT.index(levels[0]), INIT.index(levels[1])
            return 0.9 - 0.03 * i + 0.02 * j + noise[i, j, s]

        (inter,) = by_kind(factorial(grid_results(acc, seeds=range(5))), INTERACTION)
        found += inter.verdict == INTERACTION
    # 5% expected at most (Holm over three contrasts only lowers it); binomial sd at 2000 trials is ~0.5 pp.
    assert found / trials <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)
    assert found / trials >= 0.005  # the test does fire sometimes: it is not switched off


def test_report_section_findings_and_api_show_the_effects(tmp_path):
    from nnstudy.api import Results
    from nnstudy.report.factorial_section import factorial_section
    from nnstudy.report.figures import save_png
    from nnstudy.report.findings import findings

    gain = {"relu": 0.005, "sigmoid": 0.05}

    def acc(levels, s):
        return 0.9 + (gain[levels[0]] if levels[1] == "xavier" else 0) + seed_noise(s, levels)

    results = grid_results(acc)
    rows = [r for r in findings(results) if r["kind"] == "factorial"]
    assert [r["verdict"] for r in rows] == ["better", "better", INTERACTION]  # sigmoid: +2.25 pp on average
    assert rows[2]["finding"].startswith("activation x init: (sigmoid vs relu) x (xavier vs default)")
    assert "activation x init" in str(findings(results))  # the terminal table prints them, not as claims
    saved = []
    section = factorial_section(results, lambda fig, name, title: saved.append(save_png(fig, tmp_path / name)) or
                                {"file": name, "title": title})
    assert [r["verdict"] for r in section["rows"]] == ["better", "better", INTERACTION]
    assert saved and saved[0].stat().st_size > 1000 and section["figures"][0]["file"] == "interaction-0.png"
    table = Results(results, {}).factorial
    assert table.loc[table["kind"] == "interaction", "effect_at_by_level"].iloc[0] == pytest.approx(0.05, abs=0.004)
