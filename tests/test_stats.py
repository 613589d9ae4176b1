"""Tests of nnstudy.stats against scipy/sklearn and by simulation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import classification_report

from nnstudy.stats import (
    apply_holm,
    classification_table,
    compare_paired,
    compare_study,
    confusion_by_seed,
    holm,
    mean_confusion,
    minimum_detectable_difference,
    most_confused_pairs,
    per_class_f1_differences,
    recommended_seeds,
    summarize,
)
from nnstudy.store.results import EpochRow, RunResult, StudyResults

NO_DIFF = "no detectable difference"


def _power(diff, sd, n, alpha=0.05):
    """Power of the two-sided paired t-test, written out independently."""
    df, nc = n - 1, diff / sd * math.sqrt(n)
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    # lower tail as P(-T > t_crit): scipy's nct.cdf gives nan far out in the tail
    return stats.nct.sf(t_crit, df, nc) + stats.nct.sf(t_crit, df, -nc)


def _compare(base, var, higher_is_better=True, metric="test_acc"):
    seeds = range(len(base))
    return compare_paired(dict(zip(seeds, base)), dict(zip(seeds, var)), higher_is_better=higher_is_better,
                          variant_name="leaky-relu", baseline_name="relu", metric=metric, epoch=10)


# ---------------------------------------------------------------- summarize


def test_summarize_matches_numpy_and_scipy():
    x = np.array([0.81, 0.79, 0.84, 0.80, 0.82])
    s = summarize(x)
    assert s.n == 5
    assert s.mean == pytest.approx(x.mean())
    assert s.std == pytest.approx(x.std(ddof=1))
    assert (s.min, s.max) == (0.79, 0.84)
    low, high = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))
    s99 = summarize(x, confidence=0.99)
    assert s99.ci_low < s.ci_low and s99.ci_high > s.ci_high


def test_summarize_drops_non_finite_and_handles_small_n():
    s = summarize([1.0, np.nan, 3.0, np.inf])
    assert s.n == 2 and s.mean == 2.0 and s.std == pytest.approx(math.sqrt(2))
    one = summarize([0.5, np.nan])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)
    empty = summarize([np.nan])
    assert empty.n == 0 and all(math.isnan(v) for v in (empty.mean, empty.min, empty.ci_high))
    flat = summarize([0.7, 0.7, 0.7])
    assert flat.std == 0 and flat.ci_low == flat.ci_high == pytest.approx(0.7)


# ---------------------------------------------------------------- compare_paired


BASE = [0.800, 0.810, 0.790, 0.820, 0.800]
VAR = [0.804, 0.815, 0.793, 0.826, 0.799]


def test_compare_paired_matches_scipy_and_hand_computation():
    c = _compare(BASE, VAR)
    d = np.array(VAR) - np.array(BASE)
    assert c.n == 5
    assert c.p_value == pytest.approx(stats.ttest_rel(VAR, BASE).pvalue)
    assert c.p_holm == c.p_value
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.diff_mean == pytest.approx(d.mean())
    assert c.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert c.wins == 4
    assert c.relative_pct == pytest.approx(100 * d.mean() / np.mean(BASE))
    assert c.mde == pytest.approx(minimum_detectable_difference(d.std(ddof=1), 5))
    assert c.verdict == "better" and c.warning is None
    assert c.sentence.startswith("leaky-relu is better than relu on test accuracy at epoch 10: +0.34 pp (95% CI")
    assert c.sentence.endswith("4/5 seeds.")


def test_lower_loss_is_better_and_higher_loss_is_worse():
    base = [0.50, 0.52, 0.49, 0.55, 0.51]
    lower = [b - 0.03 + e for b, e in zip(base, [0.001, -0.002, 0.0, 0.002, -0.001])]
    c = _compare(base, lower, higher_is_better=False, metric="test_loss")
    assert c.diff_mean < 0 and c.verdict == "better" and c.wins == 5
    assert "-0.0300" in c.sentence and "pp" not in c.sentence
    worse = _compare(lower, base, higher_is_better=False, metric="test_loss")
    assert worse.verdict == "worse" and worse.wins == 0


def test_no_difference_sentence_reports_detectable_difference():
    c = _compare(BASE, [b + e for b, e in zip(BASE, [0.002, -0.001, 0.0, -0.002, 0.0015])])
    assert c.verdict == NO_DIFF
    assert "no detectable difference at n=5" in c.sentence
    assert f"{100 * c.mde:.2f} pp or more." in c.sentence


def test_pairing_drops_missing_and_non_finite_seeds():
    base = {1: 0.5, 2: 0.6, 3: float("nan"), 4: 0.7, 5: 0.8, 6: 0.9}
    var = {1: 0.4, 2: 0.5, 3: 0.6, 4: 0.65, 6: 0.7, 7: 0.1}
    c = compare_paired(base, var, higher_is_better=False, variant_name="v", baseline_name="b",
                       metric="test_loss", epoch=1)
    assert c.n == 4  # seeds 1, 2, 4, 6
    assert c.baseline_mean == pytest.approx(np.mean([0.5, 0.6, 0.7, 0.9]))
    assert c.warning.startswith("only n=4 seeds: no conclusion is possible; run at least ")


def test_degenerate_differences():
    same = _compare(BASE, BASE)
    assert same.p_value == 1.0 and same.verdict == NO_DIFF and math.isnan(same.mde)
    exact = [0.5, 0.25, 0.75, 0.625, 0.375]  # binary fractions: the shift is exact
    shifted = _compare(exact, [b + 0.125 for b in exact])
    assert shifted.p_value == 0.0 and shifted.verdict == "better" and shifted.d_z == math.inf
    assert shifted.ci_low == shifted.ci_high == 0.125
    rounded = _compare([0.81, 0.70, 0.33], [0.82, 0.71, 0.34])  # +0.01 each, up to float rounding
    assert rounded.p_value == 0.0 and rounded.diff_mean == pytest.approx(0.01) and math.isnan(rounded.mde)
    single = _compare([0.5], [0.9])
    assert math.isnan(single.p_value) and single.verdict == NO_DIFF
    assert single.warning == "only n=1 seeds: no conclusion is possible; run at least 10 seeds"


def test_small_n_warning_recommends_enough_seeds():
    c = _compare([0.80, 0.81, 0.79], [0.81, 0.815, 0.80])
    d = np.array([0.01, 0.005, 0.01])
    k = recommended_seeds(d.std(ddof=1), d.mean())
    assert c.warning == f"only n=3 seeds: no conclusion is possible; run at least {max(k, 5)} seeds"


# ---------------------------------------------------------------- Holm


def test_holm_hand_worked_example():
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []


def test_holm_against_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_apply_holm_can_overturn_a_verdict():
    c = _compare(BASE, VAR)
    adjusted = apply_holm([c] + [_compare(BASE, BASE)] * 20)[0]
    assert adjusted.p_holm == pytest.approx(min(1.0, 21 * c.p_value))
    assert adjusted.p_holm > 0.05 and adjusted.verdict == NO_DIFF and c.verdict == "better"


# ---------------------------------------------------------------- power


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_minimum_detectable_difference_has_80_percent_power(n):
    mde = minimum_detectable_difference(0.004, n)
    assert _power(mde, 0.004, n) == pytest.approx(0.8, abs=1e-3)


def test_minimum_detectable_difference_shrinks_with_n_and_handles_edges():
    mdes = [minimum_detectable_difference(1.0, n) for n in (2, 3, 5, 10, 50)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert minimum_detectable_difference(2.0, 5) == pytest.approx(2 * mdes[2])
    assert math.isnan(minimum_detectable_difference(1.0, 1))
    assert math.isnan(minimum_detectable_difference(0.0, 5))


def test_recommended_seeds_is_the_smallest_sufficient_n():
    for sd in (0.0015, 0.004, 0.01, 0.02, 0.05):
        n = recommended_seeds(sd, 0.01)
        assert _power(0.01, sd, n) >= 0.8 > _power(0.01, sd, n - 1)
    assert recommended_seeds(0.01, 0.002) == 199
    assert recommended_seeds(0.01, 0.002, max_n=198) is None
    assert recommended_seeds(0.01, 0.0) is None
    assert recommended_seeds(1.0, 0.001) is None  # would need far more than 200
    assert recommended_seeds(0.0, 0.01) == 2


def _simulate(rng, n_sims, n_seeds, true_diff, noise, n_variants=1):
    """Per-seed accuracies: shared seed effect (cancels in pairs) plus run noise."""
    seed_effect = rng.normal(0, 0.01, (n_sims, 1, n_seeds))
    runs = 0.80 + seed_effect + rng.normal(0, noise, (n_sims, 1 + n_variants, n_seeds))
    runs[:, 1:] += true_diff
    return runs


def test_aa_false_positive_rate_is_at_most_alpha():
    # Binomial tolerance: the exact rate is 5%, the estimate over n_sims studies
    # has a standard error of sqrt(.05 * .95 / n_sims); allow three of them.
    n_sims = 3000
    tolerance = 3 * math.sqrt(0.05 * 0.95 / n_sims)
    runs = _simulate(np.random.default_rng(1234), n_sims, 5, 0.0, 0.003)
    verdicts = [_compare(r[0], r[1]).verdict for r in runs]
    rate = np.mean([v != NO_DIFF for v in verdicts])
    assert 0.02 < rate <= 0.05 + tolerance  # calibrated, not merely silent


def test_aa_family_wise_error_rate_with_holm_is_at_most_alpha():
    n_sims, n_variants = 1500, 4
    tolerance = 3 * math.sqrt(0.05 * 0.95 / n_sims)
    runs = _simulate(np.random.default_rng(99), n_sims, 5, 0.0, 0.003, n_variants)
    any_positive = []
    for r in runs:
        family = apply_holm([_compare(r[0], r[k]) for k in range(1, n_variants + 1)])
        any_positive.append(any(c.verdict != NO_DIFF for c in family))
    assert np.mean(any_positive) <= 0.05 + tolerance


def test_true_difference_is_found_at_the_recommended_seed_count():
    noise = 0.003  # per run; the paired difference has sd noise * sqrt(2)
    n = recommended_seeds(noise * math.sqrt(2), 0.01)
    rng = np.random.default_rng(7)
    found = [_compare(r[0], r[1]).verdict == "better" for r in _simulate(rng, 2000, n, 0.01, noise)]
    assert np.mean(found) >= 0.8
    found_n2 = [_compare(r[0], r[1]).verdict == "better" for r in _simulate(rng, 1000, 2, 0.01, noise)]
    assert np.mean(found_n2) < 0.5


# ---------------------------------------------------------------- per class


CLASSES = ["cat", "dog", "bird"]


def _predictions(rng, y, error_rates):
    """Predictions that are wrong on class k with probability error_rates[k]."""
    pred = y.copy()
    wrong = rng.random(y.size) < np.asarray(error_rates)[y]
    pred[wrong] = (y[wrong] + rng.integers(1, len(CLASSES), wrong.sum())) % len(CLASSES)
    return pred


def test_classification_table_equals_sklearn_for_one_seed():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    pred = _predictions(rng, y, [0.1, 0.3, 0.5])
    table = classification_table(y, {0: pred}, CLASSES)
    report = classification_report(y, pred, target_names=CLASSES, output_dict=True, zero_division=0)
    for row in table["classes"]:
        ref = report[row["name"]]
        assert row["precision"].mean == ref["precision"] and row["recall"].mean == ref["recall"]
        assert row["f1"].mean == ref["f1-score"] and row["support"] == ref["support"]
    assert table["accuracy"].mean == report["accuracy"]
    for avg in ("macro avg", "weighted avg"):
        assert table[avg]["f1"].mean == report[avg]["f1-score"]
        assert table[avg]["precision"].mean == report[avg]["precision"]
        assert table[avg]["support"] == report[avg]["support"]


def test_classification_table_summarises_over_seeds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    preds = {s: _predictions(rng, y, [0.2, 0.2, 0.2]) for s in range(4)}
    table = classification_table(y, preds, CLASSES)
    acc = [np.mean(p == y) for p in preds.values()]
    assert table["accuracy"].n == 4 and table["accuracy"].mean == pytest.approx(np.mean(acc))
    assert table["accuracy"].std == pytest.approx(np.std(acc, ddof=1))


def test_confusion_and_most_confused_pairs():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    preds = {1: np.array([1, 1, 0, 0, 1, 1, 2, 2]), 2: np.array([1, 0, 0, 0, 1, 2, 2, 2])}
    cms = confusion_by_seed(y, preds, 3)
    assert cms[1][0, 1] == 2 and cms[2][1, 2] == 1 and cms[1].shape == (3, 3)
    mean_cm = mean_confusion(list(cms.values()))
    assert mean_cm[0, 1] == 1.5 and mean_cm[1, 2] == 0.5 and mean_cm[0, 0] == 2.5
    pairs = most_confused_pairs(mean_cm, CLASSES)
    assert [(p[0], p[1]) for p in pairs] == [("cat", "dog"), ("dog", "bird")]
    assert pairs[0][2:] == (1.5, 4, "cat is taken for dog in 1.5 of 4 cases")
    whole = most_confused_pairs(np.array([[900, 100], [20, 980]]), ["cat", "dog"], top=1)
    assert whole[0][4] == "cat is taken for dog in 100 of 1000 cases"


def test_per_class_f1_differences_flags_only_the_hurt_class():
    rng = np.random.default_rng(3)
    names = ["cat", "dog", "bird", "frog"]
    y = rng.integers(0, 4, 4000)

    def predict(bird_into_cat):
        pred = np.where(rng.random(y.size) < 0.1, (y + rng.integers(1, 4, y.size)) % 4, y)
        # some correctly classified birds are now taken for cats
        pred[(y == 2) & (pred == 2) & (rng.random(y.size) < bird_into_cat)] = 0
        return pred

    base = {s: predict(0.0) for s in range(6)}
    var = {s: predict(0.3) for s in range(6)}
    flagged = {c.metric: c for c in per_class_f1_differences(y, base, var, names, "v", "b")}
    # bird loses recall; cat loses precision (it absorbs the birds); dog and frog are untouched
    assert flagged["f1:bird"].verdict == "worse"
    assert flagged["f1:bird"].sentence.startswith("v is worse than b on F1 of class bird:")
    assert "f1:dog" not in flagged and "f1:frog" not in flagged


# ---------------------------------------------------------------- compare_study


def _study(failed=None):
    rng = np.random.default_rng(5)
    variants, seeds = ["relu", "gelu", "tanh"], [0, 1, 2, 3, 4]
    shift = {"relu": 0.0, "gelu": 0.01, "tanh": -0.0}
    runs = []
    for v in variants:
        for s in seeds:
            history = [EpochRow(e, 1.0, 0.7, 1.0 - shift[v] + rng.normal(0, 0.002), 0.8 + shift[v] + s * 0.01
                                + rng.normal(0, 0.002), 0.1, 1.0) for e in (1, 2, 3)]
            status = "failed" if (v, s) == failed else "done"
            runs.append(RunResult(f"{v}-{s}", v, s, status, {}, history=history))
    return StudyResults("act", "", variants, "relu", seeds, [1, 3], CLASSES, np.zeros(1, dtype=np.int64),
                        {}, runs, Path("."))


def test_compare_study_covers_every_comparison_with_holm_over_all():
    comps = compare_study(_study(failed=("tanh", 2)))
    assert len(comps) == 2 * 2 * 2  # epochs x metrics x non-baseline variants
    assert [(c.epoch, c.metric, c.variant) for c in comps[:4]] == [
        (1, "test_acc", "gelu"), (1, "test_acc", "tanh"), (1, "test_loss", "gelu"), (1, "test_loss", "tanh")]
    assert [c.p_holm for c in comps] == pytest.approx(holm([c.p_value for c in comps]), nan_ok=True)
    assert all(c.n == (4 if c.variant == "tanh" else 5) for c in comps)
    gelu = [c for c in comps if c.variant == "gelu"]
    assert all(c.verdict == "better" for c in gelu)
    assert [c.higher_is_better for c in comps[:4]] == [True, True, False, False]
    with pytest.raises(ValueError, match="unknown metric"):
        compare_study(_study(), metrics=("val_acc",))
