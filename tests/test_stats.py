"""Tests of nnstudy.stats against scipy/sklearn/statsmodels and by simulation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import classification_report
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from nnstudy.stats import (
    MIN_SEEDS,
    apply_holm,
    classification_table,
    compare_paired,
    compare_study,
    confusion_by_seed,
    format_p,
    format_relative,
    holm,
    mean_confusion,
    minimum_detectable_difference,
    most_confused_pairs,
    paired_p_value,
    per_class_f1_differences,
    recommended_seeds,
    summarize,
)
from nnstudy.store.results import EpochRow, RunResult, StudyResults

NO_DIFF = "no detectable difference"


def _power(diff, sd, n, alpha=0.05):
    """Power of the two-sided paired t-test, from statsmodels (an independent implementation)."""
    return TTestPower().power(effect_size=diff / sd, nobs=n, alpha=alpha, alternative="two-sided")


def _compare(base, var, higher_is_better=True, metric="test_acc", resolution=None):
    seeds = range(len(base))
    return compare_paired(dict(zip(seeds, base)), dict(zip(seeds, var)), higher_is_better=higher_is_better,
                          variant_name="leaky-relu", baseline_name="relu", metric=metric, epoch=10,
                          resolution=resolution)


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


def test_the_t_interval_is_scipys_to_the_last_bit_across_scales_sizes_and_confidences():
    """t_interval scales a cached standard interval; it must give scipy's own bits, or stored verdicts would move."""
    from nnstudy.stats.summary import t_interval

    rng = np.random.default_rng(0)
    for i in range(2000):
        n, confidence = int(rng.integers(2, 40)), (0.8, 0.9, 0.95, 0.99)[i % 4]
        mean, sd = float(rng.normal() * 10.0 ** rng.integers(-8, 6)), float(abs(rng.normal()) * 10.0 ** rng.integers(-9, 5))
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
        assert t_interval(mean, sd, n, confidence) == (float(low), float(high)), (mean, sd, n, confidence)


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
    assert c.sentence.endswith("4/5 seeds; paired t-test.")


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
    assert c.verdict == "better" and c.warning is None  # a verdict stands below MIN_SEEDS (see the rule)


# ---------------------------------------------------------------- ties and near-ties: one rule


def test_equal_and_near_equal_differences_are_judged_one_way_with_the_resolution_as_the_least_spread():
    step = 1 / 359  # one test image of 359
    base = [0.5, 0.6, 0.7, 0.55, 0.65]
    tied = _compare(base, [b - 2 * step for b in base], metric="test_acc")
    # by hand: no floor given, so 4 significant digits of the larger mean (6e-5); with the step given:
    stepped = compare_paired(dict(enumerate(base)), {i: b - 2 * step for i, b in enumerate(base)},
                             higher_is_better=True, variant_name="v", baseline_name="b", metric="test_acc", epoch=1,
                             resolution=step)
    t = (2 * step) / (step / math.sqrt(5))
    assert stepped.p_value == pytest.approx(2 * stats.t.sf(t, 4))
    assert stepped.floor == step and "spread taken as the resolution (0.28 pp)" in stepped.test
    assert (stepped.ci_low, stepped.ci_high) == pytest.approx((-2 * step - stats.t.ppf(0.975, 4) * step / math.sqrt(5),
                                                               -2 * step + stats.t.ppf(0.975, 4) * step / math.sqrt(5)))
    assert tied.p_value < stepped.p_value  # a finer resolution, stronger evidence from the same agreement
    # the case: the quickstart's two seeds agreeing on -0.56 pp in steps of 1/359 get a bounded interval
    two = compare_paired({0: 0.5, 1: 0.6}, {0: 0.5 - 2 * step, 1: 0.6 - 2 * step}, higher_is_better=True,
                         variant_name="mlp", baseline_name="cnn", metric="test_acc", epoch=1, resolution=step)
    assert math.isfinite(two.ci_low) and two.ci_low < 0 < two.ci_high and two.verdict == NO_DIFF
    same = _compare(BASE, BASE)
    assert same.p_value == 1.0 and same.verdict == NO_DIFF


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_a_perfectly_consistent_effect_is_never_weaker_evidence_than_a_noisier_one(n):
    """Epoch counts (step 1): [-9] * n against every way of adding noise to it with the same mean."""
    rng = np.random.default_rng(n)
    consistent = float(paired_p_value(np.full(n, 1.0), np.full(n, 10.0), floor=1.0))
    for _ in range(200):
        noise = rng.integers(-3, 4, n).astype(float)
        noise -= noise.mean()
        noisy = float(paired_p_value(1.0 + noise, np.full(n, 10.0), floor=1.0))
        assert consistent <= noisy + 1e-15
    if n == 5:  # the pair: all -9, and four -9 with one -8
        near = float(paired_p_value(np.array([1.0, 1, 1, 1, 2]), np.full(5, 10.0), floor=1.0))
        assert consistent < 1e-4 and near < 1e-4 and consistent <= near * 1.2


def test_agreement_in_the_last_bits_is_not_overwhelming_evidence():
    # 0.01 with 1e-10 of noise at n = 2: the old rule gave p = 3e-9; the floor (4 significant digits) bounds it
    p = float(paired_p_value([0.81 + 1e-10, 0.82 - 1e-10], [0.8, 0.81]))
    assert p > 1e-3
    # and on an accuracy over 359 images, such agreement is one image's worth of spread: not shown at n = 2
    assert float(paired_p_value([0.81 + 1e-10, 0.82 - 1e-10], [0.8, 0.81], floor=1 / 359)) > 0.05


def test_paired_p_value_is_ttest_rel_when_the_differences_vary_beyond_the_resolution():
    rng = np.random.default_rng(12)
    b, v = rng.normal(0.8, 0.01, (50, 4)), rng.normal(0.8, 0.01, (50, 4))
    assert paired_p_value(v, b) == pytest.approx(stats.ttest_rel(v, b, axis=1).pvalue)
    # spread below the floor: the floor replaces it, and only then
    floored = paired_p_value(v, b, floor=1.0)
    assert np.all(floored >= paired_p_value(v, b) - 1e-15)


def test_single_seed_cannot_be_compared():
    single = _compare([0.5], [0.9])
    assert math.isnan(single.p_value) and single.verdict == NO_DIFF
    assert single.warning == "only 1 paired seed(s): no comparison is possible; run at least 5 seeds"


# Correct counts out of 359 test images per seed for an A/A pair: two "variants" from one distribution.
# "independent": each run Binomial(359, 0.9 + a seed effect shared by the pair), differences sd ~8 images;
# "agreeing": the pair also shares which images are easy and disagrees only on ~36 coin-flip images (as two
# networks from one seed do), differences sd ~4 images, so equal differences on every seed are common.
N_TEST, N_AA = 359, 20_000


def _aa_counts(rng, scenario, n):
    p_seed = np.clip(0.9 + rng.normal(0, 0.01, (N_AA, n)), 0, 1)
    if scenario == "independent":
        return rng.binomial(N_TEST, p_seed), rng.binomial(N_TEST, p_seed)
    easy = rng.binomial(N_TEST - 36, p_seed)
    return easy + rng.binomial(36, 0.5, (N_AA, n)), easy + rng.binomial(36, 0.5, (N_AA, n))


@pytest.mark.parametrize("scenario", ["independent", "agreeing"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_aa_false_positive_rate_on_count_metrics(scenario, n):
    """No more than 5% "better"/"worse" between identical variants when accuracies are counts / 359.

    Measured by hand on these draws with the old rule (equal nonzero differences: p = 0): 5.7% (independent)
    and 6.2% (agreeing) at n=2; now 2.3% and 0.6% (n=3: 4.9%, 4.3%; n=5: 4.7%, 5.1%). Tolerance: the rate over 20,000 studies has a Monte Carlo standard error of at most
    sqrt(.05 * .95 / 20000) = 0.15 pp at a true 5%; three of them, 0.46 pp, leave a real excess visible.
    """
    rng = np.random.default_rng([n, len(scenario)])
    baseline, variant = _aa_counts(rng, scenario, n)
    b, v = baseline / N_TEST, variant / N_TEST
    p = paired_p_value(v, b, floor=1 / N_TEST)  # the step compare_study passes for an accuracy
    tolerance = 3 * math.sqrt(0.05 * 0.95 / N_AA)
    assert np.mean(p < 0.05) <= 0.05 + tolerance
    # The rate above is that of the final verdict: compare_paired decides exactly "p < 0.05" here.
    tied = np.flatnonzero(np.ptp(variant - baseline, axis=1) == 0)
    rejected = np.flatnonzero(p < 0.05)
    for i in np.concatenate([tied[:40], rejected[:40], np.arange(40)]):
        c = _compare(b[i], v[i], resolution=1 / N_TEST)
        assert c.p_value == pytest.approx(p[i]) and (c.verdict != NO_DIFF) == (p[i] < 0.05), (b[i], v[i])
        assert c.warning is None or c.verdict == NO_DIFF
    if n == 5:
        assert np.mean(p < 0.05) > 0.03  # calibrated, not merely silent


# ---------------------------------------------------------------- few seeds: one rule


def test_few_seeds_rule_a_verdict_stands_and_no_difference_is_warned():
    rng = np.random.default_rng(21)
    seen = set()
    for n in (2, 3, 4, 5, 6):
        for shift in (0.0, 0.004, 0.02):
            for _ in range(15):
                b = rng.normal(0.8, 0.01, n)
                c = _compare(b, b + shift + rng.normal(0, 0.003, n))
                seen.add((n < MIN_SEEDS, c.verdict))
                assert "no conclusion" not in (c.warning or "") and "no conclusion" not in c.sentence
                if c.verdict != NO_DIFF or n >= MIN_SEEDS:
                    assert c.warning is None
                else:  # the detectable size and the seeds to run
                    assert c.warning.startswith(f"only n={n} seeds: they can only detect differences of ")
                    assert f"{100 * c.mde:.2f} pp or more; run at least " in c.warning
    assert {(True, "better"), (True, NO_DIFF), (False, "better"), (False, NO_DIFF)} <= seen
    # Holm can turn a verdict into "no detectable difference": the warning follows the final verdict
    c = _compare([0.80, 0.81, 0.79], [0.81, 0.815, 0.80])
    assert c.verdict == "better" and c.warning is None
    adjusted = apply_holm([c, _compare(BASE, BASE)])[0]
    sd = np.std([0.01, 0.005, 0.01], ddof=1)
    mde = {n: f"{100 * minimum_detectable_difference(sd, n):.2f} pp" for n in (3, 5, 10)}
    assert adjusted.verdict == NO_DIFF
    assert adjusted.warning == (f"only n=3 seeds: they can only detect differences of {mde[3]} or more; run at "
                                f"least 5 seeds (with this spread, 5 detect about {mde[5]}, 10 about {mde[10]})")


# ---------------------------------------------------------------- wording


@pytest.mark.parametrize("threshold", [0.05, 0.01, 0.001])
def test_format_p_never_rounds_onto_or_across_a_threshold(threshold):
    for p in np.linspace(0.95 * threshold, 1.05 * threshold, 2001):
        text = format_p(p)
        if text.startswith("p < "):
            assert p < float(text[4:])
            continue
        shown = float(text.removeprefix("p = "))
        assert (shown < threshold) == (p < threshold), (p, text)
        assert abs(shown - p) <= 0.5001 * 10 ** (math.floor(math.log10(p)) - 1)  # two significant digits or more


def test_format_p_uses_no_more_digits_than_needed():
    cases = {0.0496: "p = 0.0496", 0.031: "p = 0.031", 0.12: "p = 0.12", 0.5: "p = 0.5", 1.0: "p = 1",
             0.00996: "p = 0.00996", 0.0104: "p = 0.01", 0.0499996: "p < 0.05", 0.0004: "p < 0.001",
             0.0506: "p = 0.051", float("nan"): "p = n/a"}
    for p, text in cases.items():
        assert format_p(p) == text


def test_relative_change_is_named_and_short():
    assert format_relative(-0.0888) == "-0.09% relative"
    assert format_relative(12.345) == "+12.35% relative"
    assert format_relative(0.004) == "+0.004% relative"
    assert format_relative(float("nan")) == "n/a"


# ---------------------------------------------------------------- Holm


def test_holm_hand_worked_example():
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []


def test_holm_against_statsmodels():
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 12, 40):
        p = rng.uniform(0, 0.2, size)
        p[: size // 3] = p[0]  # ties
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    p = np.array([0.01, np.nan, 0.04, 0.002])  # nan: left out of the family
    out = holm(p)
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx(multipletests(p[[0, 2, 3]], method="holm")[1])


def test_apply_holm_can_overturn_a_verdict():
    c = _compare(BASE, VAR)
    adjusted = apply_holm([c] + [_compare(BASE, BASE)] * 20)[0]
    assert adjusted.p_holm == pytest.approx(min(1.0, 21 * c.p_value))
    assert adjusted.p_holm > 0.05 and adjusted.verdict == NO_DIFF and c.verdict == "better"


# ---------------------------------------------------------------- power


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_minimum_detectable_difference_has_80_percent_power(n):
    mde = minimum_detectable_difference(0.004, n)
    assert _power(mde, 0.004, n) == pytest.approx(0.8, abs=1e-3)
    assert TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8) == pytest.approx(mde / 0.004, rel=1e-3)


@pytest.mark.parametrize("n", [2, 5])
def test_minimum_detectable_difference_has_80_percent_power_by_simulation(n):
    # statsmodels gives nan at n=2 (one degree of freedom), so simulate: normal differences at the MDE,
    # tested by scipy; the standard error of the rate over 200,000 studies is below 0.1 pp.
    mde = minimum_detectable_difference(0.004, n)
    diffs = np.random.default_rng(n).normal(mde, 0.004, (200_000, n))
    assert np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05) == pytest.approx(0.8, abs=0.004)


def test_minimum_detectable_difference_shrinks_with_n_and_handles_edges():
    mdes = [minimum_detectable_difference(1.0, n) for n in (2, 3, 5, 10, 50)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert minimum_detectable_difference(2.0, 5) == pytest.approx(2 * mdes[2])
    assert math.isnan(minimum_detectable_difference(1.0, 1))
    assert math.isnan(minimum_detectable_difference(0.0, 5))


def test_recommended_seeds_is_the_smallest_sufficient_n():
    for sd in (0.004, 0.01, 0.02, 0.05):  # statsmodels is nan for n=2 and far out in the tail
        n = recommended_seeds(sd, 0.01)
        assert _power(0.01, sd, n) >= 0.8 > _power(0.01, sd, n - 1)
    assert recommended_seeds(0.01, 0.002) == 199
    assert recommended_seeds(0.01, 0.002, max_n=198) is None
    assert recommended_seeds(0.01, 0.0) is None
    assert recommended_seeds(1.0, 0.001) is None  # would need far more than 200


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


def _study(failed=None, diverged=None):
    """gelu is better than relu by 1 pp, tanh equal; `diverged` maps (variant, seed) to the epoch it diverged at."""
    rng = np.random.default_rng(5)
    variants, seeds = ["relu", "gelu", "tanh"], [0, 1, 2, 3, 4]
    shift = {"relu": 0.0, "gelu": 0.01, "tanh": -0.0}
    runs = []
    for v in variants:
        for s in seeds:
            history = [EpochRow(e, 1.0, 0.7, 1.0 - shift[v] + rng.normal(0, 0.002), 0.8 + shift[v] + s * 0.01
                                + rng.normal(0, 0.002), 0.1, 1.0) for e in (1, 2, 3)]
            status = "failed" if (v, s) == failed else "done"
            if (v, s) in (diverged or {}):  # the history ends at the epoch whose loss became non-finite
                status, history = "diverged", history[: diverged[v, s]]
                history[-1].train_loss = history[-1].test_loss = float("nan")
            runs.append(RunResult(f"{v}-{s}", v, s, status, {}, history=history))
    return StudyResults("act", "", variants, "relu", seeds, [1, 3], CLASSES, np.zeros(1, dtype=np.int64),
                        {}, runs, Path("."))


def test_compare_study_covers_every_comparison_with_holm_over_all():
    comps = compare_study(_study(failed=("tanh", 2)))
    assert len(comps) == 2 * 2 * 2  # epochs x metrics x non-baseline variants
    assert [(c.epoch, c.metric, c.variant) for c in comps[:4]] == [
        (1, "test_acc", "gelu"), (1, "test_acc", "tanh"), (1, "test_loss", "gelu"), (1, "test_loss", "tanh")]
    raw = [compare_paired(*_pair(_study(failed=("tanh", 2)), c), higher_is_better=c.higher_is_better,
                          variant_name=c.variant, baseline_name=c.baseline, metric=c.metric, epoch=c.epoch).p_value
           for c in comps]
    assert [c.p_value for c in comps] == pytest.approx(raw)
    assert [c.p_holm for c in comps] == pytest.approx(multipletests(raw, method="holm")[1])
    assert all(c.n == (4 if c.variant == "tanh" else 5) for c in comps)
    gelu = [c for c in comps if c.variant == "gelu"]
    assert all(c.verdict == "better" for c in gelu)
    assert [c.higher_is_better for c in comps[:4]] == [True, True, False, False]
    with pytest.raises(ValueError, match="unknown metric"):
        compare_study(_study(), metrics=("val_acc",))


def _pair(study, c):
    """Per-seed values of the baseline and the variant of a comparison, from the runs that count."""
    def values(variant):
        return {r.seed: getattr(r.at_epoch(c.epoch), c.metric) for r in study.runs_of(variant)
                if r.status == "done" and r.at_epoch(c.epoch)}
    return values(c.baseline), values(c.variant)


def test_a_variant_diverged_on_most_seeds_has_the_verdict_diverged():
    study = _study(diverged={("gelu", 0): 1, ("gelu", 1): 1, ("gelu", 2): 2, ("gelu", 3): 3})
    comps = compare_study(study)
    gelu = [c for c in comps if c.variant == "gelu"]
    assert len(gelu) == 4 and all(c.verdict == "diverged" for c in gelu)
    assert all("gelu diverged in 4 of 5 seeds (at epochs 1, 1, 2, 3)" in c.sentence for c in gelu)
    assert all(math.isnan(c.p_value) and math.isnan(c.diff_mean) and c.warning is None for c in gelu)
    # no p-value: not part of the Holm family, which is tanh's 4 comparisons alone
    tanh = [c for c in comps if c.variant == "tanh"]
    assert [c.p_holm for c in tanh] == pytest.approx(multipletests([c.p_value for c in tanh], method="holm")[1])
    relu = compare_study(_study(diverged={("relu", s): 2 for s in (0, 1, 2)}))
    assert all(c.verdict == "diverged" and "the baseline relu diverged in 3 of 5 seeds" in c.sentence for c in relu)


def test_seeds_that_diverged_are_left_out_and_named():
    study = _study(diverged={("gelu", 2): 2, ("relu", 4): 3})
    for c in (c for c in compare_study(study) if c.variant == "gelu"):
        # left out at every epoch, also before they diverged; never averaged in
        assert c.n == 3 and c.verdict != "diverged"
        assert c.sentence.endswith(
            " Left out because they diverged: seed 2 (gelu at epoch 2), seed 4 (relu at epoch 3).")
        base, var = _pair(study, c)
        assert set(base) & set(var) == {0, 1, 3}
        assert c.diff_mean == pytest.approx(np.mean([var[s] - base[s] for s in (0, 1, 3)]))
    tanh = [c for c in compare_study(study) if c.variant == "tanh"]
    assert all(c.excluded == "seed 4 (relu at epoch 3)" for c in tanh) and all(c.n == 4 for c in tanh)


def test_losses_of_different_kinds_are_not_compared_but_accuracies_are():
    from nnstudy.stats.paired import NOT_COMPARABLE
    from nnstudy.stats.study import compare_study
    from nnstudy.store.results import EpochRow, RunResult, StudyResults

    runs = []
    for variant, loss, shift in (("ce", "cross_entropy", 0.0), ("mse", "mse", -0.02), ("ce2", "cross_entropy", 0.01)):
        for seed in range(5):
            run = RunResult(f"{variant}{seed}", variant, seed, "done", {"train": {"loss": loss}})
            wobble = 0.001 * seed + (0.0005 * seed**2 if shift else 0.0)
            run.history = [EpochRow(1, 0.5 + shift, 0.9, 0.3 + shift + wobble, 0.9 + shift + wobble, 0.1, 1.0)]
            runs.append(run)
    study = StudyResults("s", "", ["ce", "mse", "ce2"], "ce", list(range(5)), [1], ["a"], np.zeros(0), {}, runs,
                         out_dir=None)
    by = {(c.variant, c.metric): c for c in compare_study(study)}
    assert by[("mse", "test_loss")].verdict == NOT_COMPARABLE and math.isnan(by[("mse", "test_loss")].p_value)
    assert "mse trains mse and ce cross_entropy" in by[("mse", "test_loss")].sentence
    assert by[("mse", "test_acc")].verdict == "worse" and by[("ce2", "test_loss")].verdict == "worse"
