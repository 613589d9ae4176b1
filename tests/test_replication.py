"""The replication report (issue 26): the coursework's statements and numbers against ours."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from studies import tiny_study

import nnstudy
from nnstudy.cli import main
from nnstudy.config.reference import NOT_TESTED, STATEMENTS
from nnstudy.report import replication_numbers as numbers
from nnstudy.report.replication import FACT, ILLUSTRATION, _rows, outcome_of, replication_rows, write_replication
from nnstudy.stats.replication import one_run_check, prediction_interval, printed_slack, relative_difference_pct
from nnstudy.store.results import EpochRow, RunResult, StudyResults

CLASSES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _results(name: str, per_variant: dict[str, list[dict]], epoch: int = 5, y_true=None, predictions=None,
             classes=CLASSES) -> StudyResults:
    """Hand-made stored results: per variant, one dict of metrics per seed at `epoch` (and predictions there)."""
    runs = []
    for variant, seeds in per_variant.items():
        for seed, m in enumerate(seeds):
            run = RunResult(f"{variant}{seed}", variant, seed, "done", {})
            run.history = [EpochRow(epoch, m.get("train_loss", 1.0), m.get("train_acc", 0.5), m.get("test_loss", 1.0),
                                    m.get("test_acc", 0.5), 0.01, 1.0)]
            if predictions is not None:
                run.predictions = {epoch: predictions[variant][seed]}
            runs.append(run)
    y = np.zeros(0, dtype=np.int64) if y_true is None else y_true
    return StudyResults(name, "", list(per_variant), next(iter(per_variant)), list(range(len(seeds))), [epoch],
                        classes, y, {}, runs, out_dir=Path("."))


# ---------------------------------------------------------------- one run of theirs against our seeds


def test_the_prediction_interval_for_one_run_both_ways():
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.3027, half-width 4.3027 * sqrt(1 + 1/3) = 4.968
    low, high = prediction_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.968, abs=1e-3) and high == pytest.approx(2 + 4.968, abs=1e-3)
    assert not one_run_check({0: 1.0, 1: 2.0, 2: 3.0}, 6.9).outside
    assert one_run_check({0: 1.0, 1: 2.0, 2: 3.0}, 7.0).outside
    assert one_run_check({0: 1.0, 1: 2.0, 2: 3.0}, 7.0, slack=0.1).outside is False  # its rounding reaches in
    assert one_run_check({0: 1.0, 1: 2.0, 2: 3.0}, -3.0).outside  # outside below too
    single = one_run_check({0: 1.0}, 5.0)
    assert math.isnan(single.low) and not single.judged and not single.outside  # one seed cannot judge
    assert printed_slack(690) == 5 and printed_slack(34) == 0.5 and printed_slack(8) == 0.5


def test_r6_1_shows_the_coursework_s_accuracies_beside_ours_with_the_interval():
    reference = {"e6": {"A": {"test_acc": 0.62}, "B": {"test_acc": 0.65}, "C": {"test_acc": 0.70}}}
    accs = {"A": [0.60, 0.61, 0.62, 0.63, 0.64], "B": [0.64, 0.65, 0.66, 0.65, 0.64], "C": [0.55, 0.56, 0.55, 0.57, 0.56]}
    studies = {"cifar10-cnn": _results("cifar10-cnn", {v: [{"test_acc": a} for a in accs[v]] for v in accs})}
    rows = numbers.e6_accuracy_numbers(studies, reference)
    assert [r["theirs"] for r in rows] == ["62.00%", "65.00%", "70.00%"]
    assert [r["inside"] for r in rows] == [True, True, False]  # C's 0.70 is not what one run of ours gives
    assert rows[0]["ours"].startswith("62.00% (95% CI ") and rows[0]["seeds"] == "0, 1, 2, 3, 4"
    not_run = numbers.e6_accuracy_numbers({}, reference)
    assert [r["ours"] for r in not_run] == ["not run"] * 3 and all(r["inside"] is None for r in not_run)


def test_r5_4_relative_differences_in_percent_of_leaky_relu_s_value():
    assert relative_difference_pct({0: 101.0, 1: 99.0}, {0: 100.0, 1: 100.0}) == {0: 1.0, 1: -1.0}
    leaky = [0.90, 0.91, 0.92, 0.93, 0.94]
    relu = [x * (1 + d / 100) for x, d in zip(leaky, (0.25, 0.27, 0.29, 0.28, 0.30))]  # ReLU ~0.278% higher
    studies = {"mnist-activations": _results("mnist-activations", {
        "relu": [{"train_acc": a} for a in relu], "leaky-relu": [{"train_acc": a} for a in leaky]}, epoch=1)}
    inside = numbers.e5_numbers("R5.4", studies, {"e5": {"epoch_1": {"train_acc_rel_pct": 0.2789}}})
    assert inside[0]["mean"] == pytest.approx(0.278, abs=1e-9) and inside[0]["inside"] is True
    outside = numbers.e5_numbers("R5.4", studies, {"e5": {"epoch_1": {"train_acc_rel_pct": -0.5230}}})
    assert outside[0]["inside"] is False
    assert numbers.e5_numbers("R5.5", studies, {})[0]["ours"] == "not run"  # the 1000-epoch study is not stored


def _e6_studies(rng_seed: int = 0) -> tuple[dict, np.ndarray]:
    """cifar10-cnn with 100 test images (10 a class): every model right on all but class 3 ("cat"), which it
    takes for class 5 ("dog") 5 to 7 times in 10, by seed."""
    y = np.repeat(np.arange(10), 10)
    preds = {}
    for model in ("A", "B", "C"):
        preds[model] = []
        for seed, wrong in enumerate((5, 6, 7, 6, 5)):
            p = y.copy()
            p[30:30 + wrong] = 5
            preds[model].append(p)
    results = _results("cifar10-cnn", {m: [{"test_acc": 0.94}] * 5 for m in preds}, y_true=y, predictions=preds)
    return {"cifar10-cnn": results}, y


def test_per_class_and_confusion_differences_beyond_the_seed_spread_are_flagged_both_ways():
    studies, _ = _e6_studies()
    recall = [1.0] * 10
    recall[3] = 0.42  # ours: 0.5, 0.4, 0.3, 0.4, 0.5 -> 0.42 inside
    far = list(recall)
    far[0] = 0.5  # ours: 1.0 on every seed -> 0.5 far outside
    cm = np.diag([1000.0] * 10)  # the coursework's counts are per 1000 test images of a class; ours scale to that
    cm[3, 3], cm[3, 5] = 400, 600  # as ours on average (cat taken for dog 500 to 700 times in 1000): inside
    off = cm.copy()
    off[5, 3], off[5, 5] = 400, 600  # dog taken for cat 400 times in 1000: ours never -> outside
    reference = {"classes": CLASSES, "e6": {"A": {"recall": recall}, "B": {"recall": far, "confusion": off.tolist()},
                                            "C": {"recall": recall, "confusion": cm.tolist()}}}
    tables = {t["model"]: t for t in numbers.e6_tables(studies, reference)}
    assert tables["A"]["flagged"] == 0 and tables["A"]["judged"] == 10
    assert tables["B"]["flagged"] == 1 and tables["B"]["rows"][0]["recall"]["inside"] is False
    assert tables["C"]["confusion"]["flagged"] == 0 and tables["C"]["confusion"]["n"] == 5
    flagged = [(i, j) for i, row in enumerate(tables["B"]["confusion"]["cells"]) for j, c in enumerate(row)
               if c["outside"]]
    assert flagged == [(5, 3), (5, 5)]
    assert tables["A"]["confusion"] is None  # A's matrix is only an image in the coursework


# ---------------------------------------------------------------- the rows and the page


def test_verdict_labels_map_to_outcomes_and_unknown_ones_pass_verbatim():
    assert outcome_of("supported") == "reproduced"
    assert outcome_of("holds") == FACT != "reproduced"  # an exact fact is true, not statistical evidence
    assert outcome_of("true by construction") == ILLUSTRATION != "reproduced"  # a construction is never support
    assert [outcome_of(v) for v in ("contradicted", "does not hold")] == ["contradicted"] * 2
    assert outcome_of("not testable: a definition") == "not testable"
    assert outcome_of("not shown") == outcome_of("diverged") == outcome_of("something new") == "not shown"


def _checked(*verdicts: str) -> list:
    """Checked claims of a hand-made study, all testing R2.1, with the given verdicts (the fields a row reads)."""
    return [SimpleNamespace(source="R2.1", text=f"claim {i}", reading="", verdict=v, evidence="")
            for i, v in enumerate(verdicts)]


@pytest.mark.parametrize("verdicts, outcome", [
    (["true by construction", "true by construction"], ILLUSTRATION),  # constructions alone: never reproduced
    (["supported", "true by construction"], "reproduced"),  # the data's claim decides, the construction is apart
    (["supported"], "reproduced"),
    (["not shown", "true by construction"], "not shown"),
    (["contradicted", "true by construction"], "contradicted"),
])
def test_a_statement_tested_only_by_constructions_is_an_illustration_counted_apart(verdicts, outcome):
    rows, _ = _rows({"mnist-init": object()}, {"mnist-init": _checked(*verdicts)}, {})
    r21 = next(r for r in rows if r["id"] == "R2.1")
    assert r21["outcome"] == outcome
    assert ("true by construction" in r21["why"]) == ("true by construction" in verdicts)


@pytest.mark.parametrize("verdicts, outcome, why", [
    (["holds", "holds"], FACT, "its 2 claim(s) hold as exact facts"),  # facts alone: never reproduced
    (["holds", "supported"], "reproduced", "all 1 claim(s) supported (1 more exact fact(s) that hold, not evidence)"),
    (["holds", "not shown"], "not shown", "0 of its 1 claim(s) supported, the rest not shown either way (1 more"),
    (["holds", "does not hold"], "contradicted", "1 of its 1 claim(s) contradicted (1 more exact fact(s)"),
    (["holds", "true by construction"], FACT, "hold as exact facts: the same on every seed, not statistical "
                                              "evidence (1 more true by construction, an illustration only)"),
    (["holds", "supported", "true by construction"], "reproduced",
     "all 1 claim(s) supported (1 more exact fact(s) that hold, not evidence; 1 more true by construction"),
])
def test_exact_facts_that_hold_are_counted_apart_from_reproduced(verdicts, outcome, why):
    rows, _ = _rows({"mnist-init": object()}, {"mnist-init": _checked(*verdicts)}, {})
    r21 = next(r for r in rows if r["id"] == "R2.1")
    assert r21["outcome"] == outcome and why in r21["why"], r21["why"]
    assert [c["outcome"] == FACT for c in r21["claims"]] == [v == "holds" for v in verdicts]


@pytest.mark.parametrize("verdicts, outcome", [
    (["supported", "supported", "supported", "not shown"], "reproduced"),  # most of the cases
    (["supported", "supported", "supported", "contradicted"], "reproduced"),  # one case against: still most
    (["supported", "supported", "not shown", "not shown"], "not shown"),  # half is not most
    (["supported", "supported", "contradicted", "contradicted"], "contradicted"),  # half against: not in most cases
    (["contradicted", "not shown", "not shown", "holds"], "not shown"),
])
def test_in_most_cases_is_read_by_the_share_of_its_cases_not_by_every_claim(verdicts, outcome):
    checked = [SimpleNamespace(source="R3.5", text=f"claim {i}", reading="", verdict=v, evidence="")
               for i, v in enumerate(verdicts)]
    rows, _ = _rows({"cifar10-pooling": object()}, {"cifar10-pooling": checked}, {})
    r35 = next(r for r in rows if r["id"] == "R3.5")
    assert r35["outcome"] == outcome and "by the rule 'in most cases'" in r35["why"], r35["why"]


def test_every_statement_has_a_row_and_nothing_run_shows_not_run(tmp_path):
    rows = replication_rows(tmp_path)
    assert [r["id"] for r in rows] == list(STATEMENTS) and len(rows) == 28
    assert {r["id"] for r in rows if r["outcome"] == "not testable"} == set(NOT_TESTED)
    r36 = next(r for r in rows if r["id"] == "R3.6")  # its claim repeats R3.3's test, mirrored: the row says so
    assert "the same test as R3.3's" in r36["untested_part"]
    assert all(r["outcome"] == "not run" for r in rows if r["id"] not in NOT_TESTED)
    r61 = next(r for r in rows if r["id"] == "R6.1")
    assert [n["theirs"] for n in r61["numbers"]] == ["62.00%", "65.00%", "70.00%"]
    r55 = next(r for r in rows if r["id"] == "R5.5")
    assert [n["theirs"] for n in r55["numbers"]] == ["-0.0888%", "+0.3474%", "-0.0900%", "+2.1124%"]
    # the one-run numbers are compared, not claimed: said in exactly the rows that show them (R6.5: its tables)
    assert {r["id"] for r in rows if r["compared"]} == {"R5.4", "R5.5", "R6.1", "R6.5"}
    assert all("not a claim, not counted" in r["compared"] for r in rows if r["compared"])


def _claims_study(tmp_path: Path) -> Path:
    """A tiny digits study named like E4's, with one claim the data support and one they contradict."""
    text = tiny_study(epochs=3).replace('name = "tiny"', 'name = "mnist-loss"').replace("seeds = [0, 1]",
                                                                                       "seeds = [0, 1, 2, 3, 4]")
    text += """
[[claims]]
text = "b has more parameters than a."
source = "R4.1"
metric = "params"
variant = "b"
baseline = "a"
direction = "greater"

[[claims]]
text = "b has fewer parameters than a."
source = "R4.2"
metric = "params"
variant = "b"
baseline = "a"
direction = "less"

[[claims]]
text = "b's test accuracy is at least zero."
source = "R4.1"
metric = "test_acc"
variant = "b"
value = -0.01
direction = "greater"
by_construction = "an accuracy is a share of images, never below zero"
"""
    path = tmp_path / "mnist-loss.toml"
    path.write_text(text.replace("model.hidden = [24]", "model.hidden = [32]"))
    return path


def test_the_page_from_a_stored_study_html_markdown_json_and_links(tmp_path, capsys):
    out = tmp_path / "out"
    nnstudy.load_study(_claims_study(tmp_path)).run(out, cache_dir=tmp_path / "cache", executor="local",
                                                    progress=False, log=open(tmp_path / "log", "w"))
    assert main(["replication", "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    rows = {r["id"]: r for r in written["rows"]}
    assert rows["R4.1"]["outcome"] == FACT and rows["R4.1"]["claims"][0]["verdict"] == "holds"
    assert rows["R4.2"]["outcome"] == "contradicted" and rows["R4.2"]["claims"][0]["verdict"] == "does not hold"
    assert [c["outcome"] for c in rows["R4.1"]["claims"]] == [FACT, ILLUSTRATION]
    assert rows["R4.1"]["why"] == ("its 1 claim(s) hold as exact facts: the same on every seed, not statistical "
                                   "evidence (1 more true by construction, an illustration only)")
    assert rows["R4.4"]["outcome"] == "not shown"  # its study ran, but no claim of it tests R4.4
    assert rows["R2.1"]["outcome"] == "not run"
    assert written["counts"]["contradicted"] == 1 and written["counts"][ILLUSTRATION] == 0
    assert written["counts"][FACT] == 1 and written["counts"]["reproduced"] == 0  # the fact is not reproduced
    assert "1 exact fact (holds)" in written["answer"] and "0 reproduced" in written["answer"]
    assert sum(written["counts"].values()) == 28 and "0 true by construction (illustration)" in (out / "replication.md").read_text()
    html = (out / "replication.html").read_text()
    assert '<span class="outcome true-by-construction">true by construction</span>' in html
    assert '<span class="outcome exact-fact">holds</span>' in html and 'class="statement exact-fact" id="R4.1"' in html
    assert 'class="statement contradicted" id="R4.2"' in html and 'href="mnist-loss/report.html"' in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")  # self-contained
    md = (out / "replication.md").read_text()
    assert "### R4.2: **CONTRADICTED**" in md and "'" in md and "&#39;" not in md
    assert "### R4.1: exact fact (holds) (its 1 claim(s) hold as exact facts" in md
    assert 'href="replication.html"' in (out / "index.html").read_text()
    nnstudy.load_study(_claims_study(tmp_path)).run(out, cache_dir=tmp_path / "cache", executor="local",
                                                    progress=False, log=open(tmp_path / "log", "w"))
    assert 'href="../replication.html"' in (out / "mnist-loss" / "report.html").read_text()
    assert main(["report", "coursework", "--out", str(out)]) == 0  # a suite's report: this page
    assert "Of the coursework's 28 statements" in capsys.readouterr().out


def test_the_reference_numbers_file_is_read_at_report_time(tmp_path):
    mine = tmp_path / "numbers.toml"
    mine.write_text('[e6.A]\ntest_acc = 0.5\n')
    written = write_replication(tmp_path / "out", mine)
    r61 = next(r for r in written["rows"] if r["id"] == "R6.1")
    assert [n["theirs"] for n in r61["numbers"]] == ["50.00%", "—", "—"]
    assert str(mine.resolve()) in (tmp_path / "out" / "replication.html").read_text()
    html, md = (tmp_path / "out" / "replication.html").read_text(), (tmp_path / "out" / "replication.md").read_text()
    r61_html = html[html.index('id="R6.1"'):html.index('id="R6.2"')]
    r62_html = html[html.index('id="R6.2"'):html.index('id="R6.3"')]
    assert "Compared, not claimed:" in r61_html and "Compared, not claimed:" not in r62_html
    r61_md = md[md.index("### R6.1"):md.index("### R6.2")]
    assert "Compared, not claimed: its numbers are compared against our single-run prediction interval" in r61_md
    assert "Compared, not claimed" not in md[md.index("### R6.2"):md.index("### R6.3")]
    mine.write_text("[e6.A\n")
    with pytest.raises(nnstudy.UserError, match="not valid TOML"):
        write_replication(tmp_path / "out", mine)


@pytest.mark.parametrize("claims, outcome", [
    ([("supported", "as flatness"), ("contradicted", "as pinned outputs")], "readings disagree"),  # neither decides
    ([("supported", "as flatness"), ("contradicted", "as flatness")], "contradicted"),  # one reading, split: contradicted
    ([("supported", ""), ("contradicted", "")], "contradicted"),  # no readings named: any contradiction stands out
    ([("contradicted", "as flatness"), ("not shown", "as pinned outputs")], "contradicted"),
    ([("supported", "as flatness"), ("supported", "as pinned outputs")], "reproduced"),
])
def test_two_readings_that_disagree_leave_the_statement_undecided_by_either(claims, outcome):
    checked = [SimpleNamespace(source="R2.1", text=f"claim {i}", reading=reading, verdict=verdict, evidence="")
               for i, (verdict, reading) in enumerate(claims)]
    rows, _ = _rows({"mnist-init": object()}, {"mnist-init": checked}, {})
    r21 = next(r for r in rows if r["id"] == "R2.1")
    assert r21["outcome"] == outcome
    assert ("different readings" in r21["why"]) == (outcome == "readings disagree")
