"""Claims checked: verdict rules on hand-made numbers, one family under Holm, exact facts, diverged seeds,
definitions fixed before the results, faithful sources, and the machinery on a real run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from scipy import stats
import pytest

import nnstudy
from nnstudy.config import parse_study
from nnstudy.config.load import builtin_studies
from nnstudy.config.reference import NOT_TESTED, OWN, STATEMENTS
from nnstudy.errors import UserError
from nnstudy.stats.claims import (CONTRADICTED, DIVERGED, DOES_NOT_HOLD, HOLDS, NOT_SHOWN, SUPPORTED, check_claims,
                                  withdrawn_claims)
from nnstudy.stats.paired import holm
from nnstudy.store.db import Store
from nnstudy.store.results import EpochRow, RunResult, StudyResults

README = Path(__file__).resolve().parents[1] / "README.md"


def _study(values: dict[str, list[float]], claims: list[dict], probe: str | None = None,
           status: dict[tuple[str, int], str] | None = None) -> StudyResults:
    """Runs whose final test accuracy (or probe at epoch 0 and 1) per seed are the given values."""
    runs = []
    for variant, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            run = RunResult(f"{variant}{seed}", variant, seed, (status or {}).get((variant, seed), "done"), {})
            run.history = [EpochRow(1, 1.0, 0.5, 1.0, value if probe is None else 0.5, 0.1, 1.0)]
            if probe:
                layers = {f"{probe}|{layer}": value * (i + 1) for i, layer in enumerate("abc")}
                run.probes = {0: dict(layers), 1: dict(layers)}
            runs.append(run)
    return StudyResults("s", "", list(values), next(iter(values)), list(range(10)), [1], ["a", "b"], np.zeros(0),
                        {}, runs, out_dir=None, claims=claims)


def _claim(**kw) -> dict:
    return {"text": kw.pop("text", "t"), "source": "", "metric": "test_acc", "variant": "b", "baseline": None,
            "value": None, "direction": "greater", "tolerance": 0.0, "epoch": None, "threshold": None, **kw}


A = [0.90, 0.91, 0.92, 0.93, 0.94]
UP = [x + 0.02 + 0.001 * i for i, x in enumerate(A)]


# ---------------------------------------------------------------- verdicts of one claim


def test_directional_claims_follow_the_two_sided_test():
    (supported,) = check_claims(_study({"a": A, "b": UP}, [_claim(baseline="a")]))
    assert supported.verdict == SUPPORTED and supported.n == 5 and "+2.20 pp" in supported.evidence
    assert supported.kind == "statistical" and supported.p_value < 0.001
    (contradicted,) = check_claims(_study({"a": A, "b": UP}, [_claim(baseline="a", direction="less")]))
    assert contradicted.verdict == CONTRADICTED
    noisy = [x + d for x, d in zip(A, (0.01, -0.012, 0.004, -0.003, 0.002))]
    (unclear,) = check_claims(_study({"a": A, "b": noisy}, [_claim(baseline="a")]))
    assert unclear.verdict == NOT_SHOWN and "not shown at n=5 seeds" in unclear.evidence
    (few,) = check_claims(_study({"a": A[:1], "b": UP[:1]}, [_claim(baseline="a")]))
    assert few.verdict == NOT_SHOWN and "needs at least 2" in few.evidence


def test_a_directional_claim_needs_the_95_percent_interval_not_a_one_sided_test():
    # Differences with one-sided p ~ 0.04 (two-sided ~ 0.08): "supported" under the old one-sided rule, not now.
    d = np.array([0.010, 0.002, 0.012, -0.001, 0.008])
    (claim,) = check_claims(_study({"a": A, "b": list(np.array(A) + d)}, [_claim(baseline="a")]))
    assert 0.05 < claim.p_value < 0.1 and claim.verdict == NOT_SHOWN and claim.ci_low < 0 < claim.ci_high


def test_equal_differences_are_judged_with_the_metric_s_resolution_as_their_spread():
    same = [0.10] * 5

    def check(values, n_test):
        study = _study({"b": values}, [_claim(value=0.2, direction="less")])
        study.dataset = {"n_test": n_test}  # test accuracy in steps of one image of n_test
        return check_claims(study)[0]

    # 5 seeds each 10 images of 100 below: the spread is one image (0.01), t = 0.1 / (0.01 / sqrt 5)
    five = check(same, 100)
    assert five.p_value == pytest.approx(2 * stats.t.sf(0.1 / (0.01 / math.sqrt(5)), 4)) and five.verdict == SUPPORTED
    assert "spread taken as the resolution, one test image (1 pp)" in five.evidence
    # near-ties are judged the same way: one seed one image off is no stronger, no weaker than the step allows
    near = check([0.10, 0.10, 0.10, 0.10, 0.11], 100)
    assert near.p_value >= five.p_value and near.verdict == SUPPORTED
    # with 10 test images the same agreement is one step of 0.1: two seeds cannot show it
    coarse = check(same[:2], 10)
    assert coarse.verdict == NOT_SHOWN and coarse.p_value > 0.05


def test_within_claims_need_the_95_percent_interval_inside_the_tolerance():
    b = [0.11, 0.10, 0.12, 0.11, 0.10]
    close = [x + d for x, d in zip(b, (0.001, -0.001, 0.0005, 0.0, -0.0005))]
    (inside,) = check_claims(_study({"a": b, "b": close}, [_claim(baseline="a", direction="within", tolerance=0.01)]))
    assert inside.verdict == SUPPORTED and -0.01 < inside.ci_low and inside.ci_high < 0.01
    far = [x + d for x, d in zip(b, (0.05, 0.052, 0.048, 0.051, 0.049))]
    (outside,) = check_claims(_study({"a": b, "b": far}, [_claim(baseline="a", direction="within", tolerance=0.01)]))
    assert outside.verdict == CONTRADICTED and "95% CI" in outside.evidence
    wobbly = [x + d for x, d in zip(b, (0.02, -0.02, 0.01, -0.01, 0.0))]
    (unsure,) = check_claims(_study({"a": b, "b": wobbly}, [_claim(baseline="a", direction="within", tolerance=0.01)]))
    assert unsure.verdict == NOT_SHOWN
    (equal,) = check_claims(_study({"a": b, "b": b}, [_claim(baseline="a", direction="within", tolerance=0.0)]))
    assert equal.verdict == NOT_SHOWN  # equal per seed could be chance for a measured metric


# ---------------------------------------------------------------- exact facts


def _exact_study(values: dict[str, list[float]], claims: list[dict]) -> StudyResults:
    study = _study({v: [0.5] * len(x) for v, x in values.items()}, claims)
    for run in study.runs:
        run.probes = {0: {"params": values[run.variant][run.seed]}}
    return study


@pytest.mark.parametrize("n", [1, 2, 5])
def test_exact_facts_hold_or_not_at_any_number_of_seeds(n):
    claims = [_claim(text="equal", metric="params", baseline="a", direction="within"),
              _claim(text="fewer", metric="params", baseline="a", direction="less"),
              _claim(text="more", metric="params", baseline="a", direction="greater")]
    equal, fewer, more = check_claims(_exact_study({"a": [1000.0] * n, "b": [1000.0] * n}, claims))
    assert (equal.verdict, fewer.verdict, more.verdict) == (HOLDS, DOES_NOT_HOLD, DOES_NOT_HOLD)
    assert equal.kind == "exact" and math.isnan(equal.p_value) and "b 1,000 vs a 1,000" in equal.evidence
    (smaller,) = check_claims(_exact_study({"a": [9000.0] * n, "b": [1000.0] * n}, claims[1:2]))
    assert smaller.verdict == HOLDS


def test_exact_facts_stay_out_of_the_holm_family():
    stats_only = [_claim(text="up", baseline="a")]
    with_facts = stats_only + [_claim(text=f"fact {i}", metric="params", baseline="a", direction="within")
                               for i in range(5)]
    study = _study({"a": A, "b": UP}, with_facts)
    for run in study.runs:
        run.probes = {0: {"params": 10.0}}
    up, *facts = check_claims(study)
    (alone,) = check_claims(_study({"a": A, "b": UP}, stats_only))
    assert up.p_holm == alone.p_holm == up.p_value and all(f.verdict == HOLDS for f in facts)


# ---------------------------------------------------------------- one family, corrected


def test_the_study_s_statistical_claims_are_one_holm_family():
    diffs = ([0.03, 0.031, 0.029, 0.032, 0.030],  # p < 0.001
             [0.010, 0.012, 0.000, 0.008, 0.0035],  # p ~ 0.038 alone; x2 after Holm
             [0.010, 0.012, 0.000, 0.008, 0.003])  # p = 0.041 alone
    values = {"a": A, **{f"v{i}": list(np.array(A) + d) for i, d in enumerate(diffs)}}
    claims = [_claim(text=f"c{i}", variant=f"v{i}", baseline="a") for i in range(3)]
    checked = check_claims(_study(values, claims))
    raw = [c.p_value for c in checked]
    assert [c.p_holm for c in checked] == pytest.approx(holm(raw))
    for c in checked:
        assert (c.verdict == SUPPORTED) == (c.p_holm < 0.05)
        assert "Holm-adjusted over the study's claims p" in c.evidence
    # At least one claim is significant alone but not after the correction: the family changes its verdict.
    assert [c.verdict for c in checked] == [SUPPORTED, NOT_SHOWN, NOT_SHOWN]
    assert checked[1].p_value < 0.05 and checked[2].p_value < 0.05  # each alone would have been "supported"


def test_a_claim_s_adjusted_interval_is_the_shared_one_comparisons_and_contrasts_use():
    from nnstudy.stats import evidence

    # One decided after Holm, two not shown after Holm though p < 0.05 alone, one whose differences tie (the
    # spread is then the floor, not their sd of 0).
    diffs = ([0.03, 0.031, 0.029, 0.032, 0.030], [0.010, 0.012, 0.000, 0.008, 0.0035],
             [0.010, 0.012, 0.000, 0.008, 0.003], [0.02] * 5)
    values = {"a": A, **{f"v{i}": list(np.array(A) + d) for i, d in enumerate(diffs)}}
    checked = check_claims(_study(values, [_claim(text=f"c{i}", variant=f"v{i}", baseline="a") for i in range(4)]))
    for c in checked:
        d = np.array(values[c.variant]) - np.array(A)  # the per-seed differences, by hand
        expected = evidence.adjusted_interval(float(d.mean()), float(d.std(ddof=1)), c.floor, 5, c.p_value, c.p_holm)
        assert (c.adj_low, c.adj_high) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert (c.adj_low > 0) == (c.p_holm < 0.05) == (c.verdict == SUPPORTED)  # decides as the verdict does
    assert checked[1].adj_high - checked[1].adj_low > checked[1].ci_high - checked[1].ci_low  # wider than 95%
    assert [c.verdict for c in checked] == [SUPPORTED, NOT_SHOWN, NOT_SHOWN, SUPPORTED]
    assert checked[3].sd == pytest.approx(0.0, abs=1e-12) and checked[3].floor > 0  # the tie: judged at the floor


# ---------------------------------------------------------------- diverged seeds


def test_diverged_seeds_are_left_out_and_named_and_most_diverged_gives_diverged():
    one = _study({"a": A, "b": UP}, [_claim(baseline="a")], status={("b", 2): "diverged"})
    (claim,) = check_claims(one)
    assert claim.n == 4 and "left out (diverged): seed 2 (b)" in claim.evidence
    most = _study({"a": A, "b": UP}, [_claim(baseline="a")], status={("b", s): "diverged" for s in (0, 1, 2)})
    (gone,) = check_claims(most)
    assert gone.verdict == DIVERGED and "b diverged in 3 of 5 seeds" in gone.evidence


def test_measurements_at_initialisation_keep_seeds_that_diverged_later():
    study = _study({"a": [1.0] * 5, "b": [2.0, 2.1, 2.2, 2.3, 2.4]},
                   [_claim(metric="first_layer_grad_norm", baseline="a", epoch=0)], probe="grad_norm",
                   status={("b", s): "diverged" for s in (0, 1, 2)})
    (claim,) = check_claims(study)
    assert claim.n == 5 and claim.verdict == SUPPORTED


# ---------------------------------------------------------------- fixed before the results


SPEC_CLAIM = {"text": "b beats a", "source": "", "metric": "test_acc", "variant": "b", "baseline": "a", "value": None,
              "direction": "greater", "tolerance": 0.0, "epoch": None, "threshold": None}


def _store_with_results(tmp_path, claims, results: bool) -> Store:
    store = Store(tmp_path / "out")
    store.save_study("s", {"claims": claims}, {}, "x.toml")
    if results:
        row, _ = store.sync_run("s", "a", 0, {}, "h", "f", tmp_path / "run")
        store.record_epochs({row.id: [EpochRow(1, 1.0, 0.5, 1.0, 0.5, 0.1, 1.0)]})
    return store


def test_a_claim_changed_before_any_result_is_not_a_revision(tmp_path):
    store = _store_with_results(tmp_path, [SPEC_CLAIM], results=False)
    store.save_study("s", {"claims": [{**SPEC_CLAIM, "direction": "less"}]}, {}, "x.toml")
    record = store.claim_history("s")["b beats a"]
    assert not record["revised"] and record["first"]["direction"] == "less"


def test_a_claim_changed_after_results_is_revised_with_its_first_definition_kept(tmp_path):
    store = _store_with_results(tmp_path, [SPEC_CLAIM], results=True)
    for change in ({"direction": "less"}, {"direction": "greater", "epoch": 1}):  # a second change keeps the first
        store.save_study("s", {"claims": [{**SPEC_CLAIM, **change}]}, {}, "x.toml")
    store.save_study("s", {"claims": [{**SPEC_CLAIM, "text": "added later"}, SPEC_CLAIM]}, {}, "x.toml")
    store.save_study("s", {"claims": [SPEC_CLAIM]}, {}, "x.toml")
    history = store.claim_history("s")
    assert history["added later"]["withdrawn"] and not history["b beats a"]["withdrawn"]
    assert history["b beats a"]["revised"] and history["b beats a"]["first"]["direction"] == "greater"
    assert history["b beats a"]["first"]["epoch"] is None
    assert history["added later"]["added_after_results"] and not history["b beats a"]["added_after_results"]
    # Rewording or re-citing is not a revision: only what the claim tests is its definition.
    other = _store_with_results(tmp_path / "2", [SPEC_CLAIM], results=True)
    other.save_study("s", {"claims": [{**SPEC_CLAIM, "source": "R5.6", "reading": "new words"}]}, {}, "x.toml")
    assert not other.claim_history("s")["b beats a"]["revised"]


def test_a_revised_claim_shows_its_first_definition_s_verdict_beside_the_new_one():
    study = _study({"a": A, "b": UP}, [_claim(text="b vs a", baseline="a", direction="less")])
    study.claim_history = {"b vs a": {"first": {**_claim(baseline="a"), "direction": "greater"}, "revised": True,
                                      "added_after_results": False}}
    (claim,) = check_claims(study)
    assert claim.revised and claim.verdict == CONTRADICTED
    assert claim.first is not None and claim.first.verdict == SUPPORTED and claim.first.direction == "greater than"


def test_revisions_show_in_the_report_of_a_rerun_study(tmp_path):
    study = {"name": "rev", "seeds": [0, 1], "dataset": {"name": "digits", "subset": 300, "test_subset": 100},
             "model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 1, "batch_size": 64},
             "variants": {"a": {}, "b": {"model": {"hidden": [8]}}},
             "claims": [{"text": "b is within 5 pp of a", "metric": "test_acc", "variant": "b", "baseline": "a",
                         "direction": "within", "tolerance": 0.05},
                        {"text": "b beats a", "metric": "test_acc", "variant": "b", "baseline": "a",
                         "direction": "greater", "source": "R5.6"}]}
    kw = dict(cache_dir=tmp_path / "cache", executor="local", progress=False)
    nnstudy.load_study(study).run(tmp_path / "out", **kw)
    study["claims"][0]["tolerance"] = 0.5
    del study["claims"][1]  # dropped once the results are in: still on record
    results = nnstudy.load_study(study).run(tmp_path / "out", **kw)
    html = Path(results.report).read_text()
    section = html.split('id="claims"', 1)[1]
    assert "Revised after the results were seen." in section and "1 revised after the results were seen" in section
    assert "within 5.00 pp of a" in section  # the first definition, with its own verdict
    (claim,) = check_claims(results.study)
    assert claim.revised and claim.first.direction == "within 5.00 pp of"
    (dropped,) = withdrawn_claims(results.study)
    assert dropped.text == "b beats a" and dropped.source == "R5.6" and dropped.direction == "greater than"
    assert "1 withdrawn after the results were seen" in section and "Withdrawn after the results were seen" in section


# ---------------------------------------------------------------- faithful to the source


def _builtin_claims() -> list[tuple[str, dict]]:
    out = []
    for name in builtin_studies():
        for claim in nnstudy.load_study(name).config.model_dump(mode="json")["claims"]:
            out.append((name, claim))
    return out


def test_every_builtin_claim_cites_a_statement_or_says_it_is_nnstudy_s_own():
    claims = _builtin_claims()
    assert claims
    for name, claim in claims:
        assert claim["source"] in STATEMENTS or claim["source"] == OWN, (name, claim["text"], claim["source"])


def test_every_testable_statement_has_a_claim_and_the_rest_are_listed_with_a_reason():
    cited = {claim["source"] for _, claim in _builtin_claims()}
    for number in STATEMENTS:
        assert (number in cited) != (number in NOT_TESTED), number
    readme = README.read_text()
    for number, why in NOT_TESTED.items():
        assert re.search(rf"\b{re.escape(number)}\b", readme), f"README does not list untestable {number}"


def test_a_claim_row_quotes_its_statement_and_marks_nnstudy_s_own():
    from nnstudy.report.sections import claims_section

    study = _study({"a": A, "b": UP}, [_claim(text="cited", baseline="a", source="R5.6"),
                                       _claim(text="ours", baseline="a", source=OWN)])
    section = claims_section(study, save=None)
    cited, ours = section["rows"]
    assert cited["source"].startswith("R5.6: \u201c" + STATEMENTS["R5.6"][:30])
    assert ours["source"] == "nnstudy's own addition, not in the coursework"
    assert section["summary"].startswith("2 claims (2 statistical, 0 exact facts): 2 supported")


def test_claims_are_validated_like_every_other_key():
    base = {"name": "s", "seeds": [0, 1], "dataset": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
            "train": {"epochs": 2}, "variants": {"a": {}, "b": {"model": {"init": "zeros"}}}}
    ok = {"text": "zeros do not learn", "metric": "test_acc", "variant": "b", "value": 0.2, "direction": "less"}
    assert parse_study({**base, "claims": [ok]}, "x.toml").claims[0].value == 0.2
    cases = [({"variant": "c"}, "claims[0].variant = 'c' is not a variant"),
             ({"metric": "test_accuracy"}, "did you mean 'test_acc'"),
             ({"baseline": "a"}, "give exactly one of baseline and value"),
             ({"direction": "bigger"}, "claims.0.direction"),
             ({"epoch": 5}, "past variant b's last epoch (2)"),
             ({"metric": "shift_agreement@2", "epoch": 1}, "measured on report epochs only"),
             ({"metric": "epochs_to_acc"}, "needs threshold"),
             ({"source": "R9.9"}, "source 'R9.9' is not a reference statement"),
             ({"metric": "class_recall"}, "needs an argument after '@', e.g. class_recall@cat"),
             ({"metric": "test_acc@2"}, "metric test_acc takes no argument")]
    for change, message in cases:
        with pytest.raises(UserError) as err:
            parse_study({**base, "claims": [{**ok, **change}]}, "x.toml")
        assert message in str(err.value) and "\n" not in str(err.value), (change, str(err.value))
    with pytest.raises(UserError, match="repeats claims"):
        parse_study({**base, "claims": [ok, ok]}, "x.toml")


# ---------------------------------------------------------------- the machinery on a real run


INIT_STUDY = {
    "name": "init-claims", "seeds": [0, 1, 2, 3, 4], "report_epochs": [1],
    # A third of the digits: the test holds whatever the verdicts, so it needs the machinery, not the full data.
    "dataset": {"name": "digits", "subset": 600, "test_subset": 300}, "model": {"kind": "mlp", "hidden": [32, 16]},
    "train": {"lr": 0.05, "batch_size": 32, "epochs": 3},
    "variants": {"default": {}, "zeros": {"model": {"init": "zeros"}},
                 "constant": {"model": {"init": "constant", "init_value": 0.05}},
                 "constant-random-bias": {"model": {"init": "constant_random_bias", "init_value": 0.05}},
                 "xavier": {"model": {"init": "xavier"}},
                 "small": {"model": {"init": "normal", "init_value": 0.001}},
                 "large": {"model": {"init": "normal", "init_value": 1.0}}},
}


def test_the_initialisation_claims_on_a_real_run_follow_the_stored_probes(tmp_path):
    """Whatever the verdicts, each is what the stored per-seed values and the family's Holm give."""
    claims = nnstudy.load_study("mnist-init").config.model_dump(mode="json")["claims"]
    study = nnstudy.load_study({**INIT_STUDY, "claims": claims})
    results = study.run(tmp_path / "out", cache_dir=tmp_path / "cache", executor="local", progress=False)
    checked = check_claims(results.study)
    assert len(checked) == len(claims)
    raw = [c.p_value for c in checked if c.kind == "statistical" and math.isfinite(c.p_value)]
    assert [c.p_holm for c in checked if c.kind == "statistical" and math.isfinite(c.p_value)] == \
        pytest.approx(holm(raw))
    large = next(c for c in checked if c.text == "Weights that are too large make the gradients explode.")
    firsts = [r.probes[0]["grad_norm|1"] for r in results.study.runs_of("large")]
    bases = [r.probes[0]["grad_norm|1"] for r in results.study.runs_of("default")]
    assert large.diff_mean == pytest.approx(np.mean(firsts) - np.mean(bases)) and large.n == 5
    for c in checked:
        significant = c.p_holm < 0.05
        assert (c.verdict in (SUPPORTED, CONTRADICTED)) == significant, c.text
        assert c.quote == STATEMENTS[c.source]

    html = Path(results.report).read_text()
    section = html.split('<h2 id="claims">Claims checked</h2>', 1)[1].split("<h2", 1)[0]
    for claim in checked:
        row = section.split(claim.text.replace("'", "&#39;"), 1)[1].split("</tr>", 1)[0]
        assert f'{claim.verdict}</span>' in row and claim.source in row, claim.text
    md = (results.study.out_dir / "report.md").read_text()
    assert "## Claims checked" in md and "| All-zero weights may not learn at all." in md


def test_a_store_from_before_claims_were_kept_still_opens_read_only(tmp_path):
    store = _store_with_results(tmp_path, [SPEC_CLAIM], results=True)
    store.conn.execute("DROP TABLE claims")
    store.close()
    assert Store(tmp_path / "out", create=False).claim_history("s") == {}


# ---------------------------------------------------------------- true by construction


def test_a_declared_construction_is_shown_apart_never_as_supported_and_can_be_refuted():
    why = "zero weights get zero gradients"
    ones = [1.0] * 5
    built = _claim(value=0.99, text="copies", by_construction=why)
    measured = _claim(baseline="a", text="measured")
    results = check_claims(_study({"a": A, "b": ones}, [built, measured]))
    assert results[0].verdict == "true by construction" and results[0].kind == "by construction"
    assert why in results[0].evidence and math.isnan(results[0].p_value)
    # kept out of the Holm family: the measured claim's adjusted p is its own p
    assert results[1].p_holm == results[1].p_value
    # a seed that breaks the declared relation: the declaration was wrong, and the claim is not shown
    broken = check_claims(_study({"b": [1.0, 1.0, 0.5, 1.0, 1.0]}, [built]))[0]
    assert broken.verdict == NOT_SHOWN and "do not bear it out" in broken.evidence


def test_losing_the_results_never_makes_a_study_unseen_again(tmp_path):
    """--force then an interrupted rerun leaves runs with no epochs: first definitions and withdrawals stay."""
    other = {**SPEC_CLAIM, "text": "a second claim"}
    store = _store_with_results(tmp_path, [SPEC_CLAIM, other], results=True)
    with store.transaction() as c:  # what a forced rerun killed before its first epoch leaves behind
        c.execute("DELETE FROM epochs")
    assert store.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0
    store.save_study("s", {"claims": [{**SPEC_CLAIM, "direction": "less"}]}, {}, "x.toml")
    history = store.claim_history("s")
    assert history["b beats a"]["revised"] and history["b beats a"]["first"]["direction"] == "greater"
    assert history["a second claim"]["withdrawn"]  # kept on record, not deleted
    # a store without results still lets claims change freely
    fresh = _store_with_results(tmp_path / "fresh", [SPEC_CLAIM], results=False)
    fresh.save_study("s", {"claims": [{**SPEC_CLAIM, "direction": "less"}]}, {}, "x.toml")
    assert fresh.claim_history("s")["b beats a"]["first"]["direction"] == "less"
