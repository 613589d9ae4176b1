"""A record that cannot be reset: each claim's first definition (its fields, the compared variants' configs, the
seeds, the epochs, the metric's version) is append-only once results exist; a claim keeps its identity through
a rewording; a claim's own declared history shows in every store; and revised, added and withdrawn reach the
findings (terminal table, --json, report block, index page)."""

from __future__ import annotations

import json
import sqlite3
import tomllib

import numpy as np
import pytest

import nnstudy.files
from nnstudy.config import parse_study
from nnstudy.config.load import load_study
from nnstudy.registry import CLAIM_METRICS
from nnstudy.stats.claim_revisions import NOT_JUDGED, revisions
from nnstudy.stats.claims import check_claims
from nnstudy.store.db import Store
from nnstudy.store.load import load_results
from nnstudy.store.results import EpochRow, StudyResults

from studies import run_args, tiny_study

CLAIM = {"id": "b-vs-a", "text": "b is more accurate than a", "metric": "test_acc", "variant": "b", "baseline": "a",
         "direction": "greater"}


def _claim_toml(claim: dict) -> str:
    lines = ["[[claims]]"]
    for key, value in claim.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    for key, value in claim.items():
        if isinstance(value, dict):  # a [claims.history] table
            lines.append(f"[claims.{key}]")
            lines += [f"{k} = {json.dumps(v) if not isinstance(v, dict) else _inline(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _inline(table: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"


def _write(tmp_path, claims: list[dict], seeds=(0, 1), variant_b="model.hidden = [24]"):
    text = tiny_study(epochs=1, variant_b=variant_b).replace("seeds = [0, 1]", f"seeds = {list(seeds)}")
    path = tmp_path / "study.toml"
    path.write_text(text + "\n" + "\n".join(_claim_toml(c) for c in claims))
    return path


def _history(tmp_path) -> dict:
    store = Store(tmp_path / "out", create=False)
    try:
        return store.claim_history("tiny")
    finally:
        store.close()


def _findings(cli, tmp_path) -> list[dict]:
    result = cli("report", "tiny", "--out", tmp_path / "out", "--json")
    assert result.rc == 0, result.err
    return [r for r in json.loads(result.out)["findings"] if r["kind"] == "claim"]


# ---------------------------------------------------------------- on real runs, through the CLI


@pytest.mark.slow  # three runs of a tiny study (~20 s on a loaded 2-core machine)
def test_force_then_an_interrupted_rerun_leave_first_definitions_and_revised_marks(cli, tmp_path, monkeypatch):
    other = {"text": "a is at least 5% accurate", "metric": "test_acc", "variant": "a", "value": 0.05,
             "direction": "greater"}
    study = _write(tmp_path, [CLAIM, other])
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache")).rc == 0
    _write(tmp_path, [{**CLAIM, "direction": "less"}, other])
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache", "--force")).rc == 0
    assert _history(tmp_path)["b-vs-a"]["revised"]

    def killed(name):  # a rerun killed before its first epoch: runs reset, no epoch stored
        if name == "job-start":
            raise KeyboardInterrupt

    monkeypatch.setattr(nnstudy.files, "crash_point", killed)
    _write(tmp_path, [{**CLAIM, "direction": "within", "tolerance": 0.5}])  # changed again, `other` dropped
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache", "--force")).rc == 130
    store = Store(tmp_path / "out", create=False)
    assert store.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0  # every result is gone
    store.close()
    monkeypatch.undo()
    history = _history(tmp_path)
    assert history["b-vs-a"]["revised"] and history["b-vs-a"]["first"]["direction"] == "greater"
    assert history["b-vs-a"]["changes"]["direction"] == "direction greater -> within"
    assert history[other["text"]]["withdrawn"] and history[other["text"]]["first"]["value"] == 0.05

    done = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert done.rc == 0
    assert "(revised)" in done.out and "direction greater -> within" in done.out  # the terminal table
    assert "(withdrawn)" in done.out
    rows = {r["finding"]: r for r in _findings(cli, tmp_path)}
    assert rows[CLAIM["text"]]["record"] == ["revised"] and rows[CLAIM["text"]]["first"]["verdict"]
    assert rows[other["text"]]["record"] == ["withdrawn"]
    report = (tmp_path / "out" / "tiny" / "report.html").read_text()
    block = report.split('id="findings"', 1)[1].split("</section>", 1)[0]
    assert "Changed after the results were seen:</strong> direction greater -&gt; within" in block
    assert "Withdrawn" in block and "First definition's verdict" in block
    index = (tmp_path / "out" / "index.html").read_text()
    assert "after the results were seen: 1 revised, 1 withdrawn" in index


@pytest.mark.slow  # three runs of a tiny study (~20 s on a loaded 2-core machine)
def test_a_reworded_claim_keeps_its_record_and_is_not_a_revision(cli, tmp_path):
    study = _write(tmp_path, [CLAIM])
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache")).rc == 0
    _write(tmp_path, [{**CLAIM, "text": "b beats a on test accuracy"}])
    done = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert done.rc == 0
    (record,) = _history(tmp_path).values()
    assert not record["revised"] and not record["added_after_results"] and not record["withdrawn"]
    assert record["first_text"] == CLAIM["text"] and record["text"] == "b beats a on test accuracy"
    (row,) = _findings(cli, tmp_path)
    assert row["record"] == ["reworded"] and row["first_text"] == CLAIM["text"] and row["first"] is None
    assert f"first worded \u201c{CLAIM['text']}\u201d" in done.out
    # Without an id the text is the identity: a rewording is a claim withdrawn and another added.
    bare = {k: v for k, v in CLAIM.items() if k != "id"}
    (tmp_path / "bare").mkdir()
    study = _write(tmp_path / "bare", [bare])
    assert cli(*run_args(study, tmp_path / "bare" / "out", tmp_path / "cache")).rc == 0
    _write(tmp_path / "bare", [{**bare, "text": "reworded"}])
    assert cli(*run_args(study, tmp_path / "bare" / "out", tmp_path / "cache")).rc == 0
    history = Store(tmp_path / "bare" / "out", create=False).claim_history("tiny")
    assert history[bare["text"]]["withdrawn"] and history["reworded"]["added_after_results"]


def test_added_seeds_mark_the_claim_revised_and_judge_its_first_definition_on_its_first_seeds(cli, tmp_path):
    study = _write(tmp_path, [CLAIM], seeds=(0, 1))
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache")).rc == 0
    kept = _history(tmp_path)["b-vs-a"]["first_verdict"]  # the run's report kept the first definition's verdict
    assert kept["verdict"] in ("supported", "contradicted", "not shown") and "n=2 seeds" in kept["evidence"]
    _write(tmp_path, [CLAIM], seeds=(0, 1, 2))
    done = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert done.rc == 0 and "seeds 2 -> 3" in done.out and "(revised)" in done.out
    record = _history(tmp_path)["b-vs-a"]
    assert record["first_verdict"] == kept  # frozen once revised: the rerun's report did not overwrite it
    assert record["revised"] and record["first"]["seeds"] == [0, 1] and record["changes"] == {"seeds": "seeds 2 -> 3"}
    store = Store(tmp_path / "out", create=False)
    (claim,) = check_claims(load_results(store, "tiny"))
    store.close()
    assert claim.n == 3 and claim.revised and claim.first.n == 2  # the first definition, on its first two seeds


def test_a_claim_s_declared_history_shows_in_a_fresh_store_with_its_first_verdict(cli, tmp_path):
    declared = {**CLAIM, "history": {"first": {"direction": "less"}, "first_text": "b is less accurate than a",
                                     "changed": "turned round after looking"}}
    study = _write(tmp_path, [declared])
    done = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert done.rc == 0 and "(revised, reworded)" in done.out
    store = Store(tmp_path / "out", create=False)
    (claim,) = check_claims(load_results(store, "tiny"))
    store.close()
    assert claim.revised and claim.first.direction == "less than" and claim.first_text == "b is less accurate than a"
    assert claim.changes[0] == "direction less -> greater after results, as the study file says: turned round after looking"
    # both definitions judged on the same runs: one leans the other way of the other
    assert claim.first.diff_mean == claim.diff_mean


def test_a_declared_history_that_is_no_claim_is_one_line_naming_the_field(cli, tmp_path):
    study = _write(tmp_path, [{**CLAIM, "history": {"first": {"colour": "red"}, "changed": "x"}}])
    result = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert result.rc == 2 and "history.first names colour" in result.err and len(result.err.strip().splitlines()) == 1
    study = _write(tmp_path, [{**CLAIM, "history": {"first": {"metric": "no_such_metric"}, "changed": "x"}}])
    result = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert result.rc == 2 and "history.first is not a valid claim" in result.err
    assert not (tmp_path / "out" / "nnstudy.db").exists()


# ---------------------------------------------------------------- the store's record, without training


SPEC = {k: v for k, v in parse_study(tomllib.loads(tiny_study(epochs=1)), "tiny.toml").model_dump(mode="json").items()
        if k in ("seeds", "variants")}  # the parts of a stored spec a claim's definition reads


def _seen(store: Store, tmp_path, spec: dict) -> None:
    store.save_study("s", spec, {}, "x.toml")
    row, _ = store.sync_run("s", "a", 0, {}, "h", "f", tmp_path / "run")
    store.record_epochs({row.id: [EpochRow(1, 1.0, 0.5, 1.0, 0.5, 0.1, 1.0)]})


def test_a_changed_variant_config_or_metric_version_is_a_revision_whose_first_verdict_is_not_judged(tmp_path):
    CLAIM_METRICS.register("versioned_acc", CLAIM_METRICS.get("test_acc"), version=1)
    try:
        claim = {**CLAIM, "metric": "versioned_acc"}
        store = Store(tmp_path / "out")
        _seen(store, tmp_path, {**SPEC, "claims": [claim]})
        wider = json.loads(json.dumps(SPEC))
        wider["variants"]["b"]["model"]["hidden"] = [32]
        wider["variants"]["b"]["train"]["epochs"] = 2
        store.save_study("s", {**wider, "claims": [claim]}, {}, "x.toml")
        CLAIM_METRICS.register("versioned_acc", CLAIM_METRICS.get("test_acc"), version=2)
        store.save_study("s", {**wider, "claims": [claim]}, {}, "x.toml")
        record = store.claim_history("s")["b-vs-a"]
        assert record["revised"] and record["first"]["configs"]["b"] != record["first"]["configs"]["a"]
        assert record["changes"] == {"configs": "config of b changed", "epochs": "epochs of b 1 -> 2",
                                     "metric_version": "metric version 1 -> 2"}
        (checked,) = check_claims(_no_runs([claim], store.claim_history("s")))
        assert checked.first.verdict == NOT_JUDGED and "its runs were replaced" in checked.first.evidence
    finally:
        CLAIM_METRICS.remove("versioned_acc")


def test_a_first_verdict_kept_before_the_runs_were_replaced_is_shown_instead_of_not_judged(tmp_path):
    store = Store(tmp_path / "out")
    _seen(store, tmp_path, {**SPEC, "claims": [CLAIM]})
    kept = {"verdict": "supported", "evidence": "b 60% vs a 50%"}
    store.keep_first_verdicts("s", {"b-vs-a": kept})  # as the report writes it, at the first definition
    store.keep_first_verdicts("s", {"b-vs-a": {**kept, "evidence": "b 61% vs a 50%"}})  # re-judged: still first
    assert store.claim_history("s")["b-vs-a"]["first_verdict"]["evidence"] == "b 61% vs a 50%"
    wider = json.loads(json.dumps(SPEC))
    wider["variants"]["b"]["model"]["hidden"] = [32]  # b's runs are replaced: the first definition's runs are gone
    store.save_study("s", {**wider, "claims": [CLAIM]}, {}, "x.toml")
    store.keep_first_verdicts("s", {"b-vs-a": {"verdict": "not shown", "evidence": "the new runs"}})  # ignored
    history = store.claim_history("s")
    store.close()
    assert history["b-vs-a"]["revised"] and history["b-vs-a"]["first_verdict"]["evidence"] == "b 61% vs a 50%"
    (checked,) = check_claims(_no_runs([CLAIM], history))
    assert checked.first.verdict == "supported" and "as judged before it changed" in checked.first.evidence
    assert "its runs were replaced" in checked.first.evidence and "b 61% vs a 50%" in checked.first.evidence
    # Nothing kept (a store from before first verdicts were kept): "not judged again", as before.
    (bare,) = check_claims(_no_runs([CLAIM], {k: {**v, "first_verdict": None} for k, v in history.items()}))
    assert bare.first.verdict == NOT_JUDGED


def _no_runs(claims: list[dict], history: dict) -> StudyResults:
    """A study's results with no runs: what is tested is the record."""
    return StudyResults("s", "", ["a", "b"], "a", [0, 1], [1], [], np.zeros(0), {}, [], out_dir=None, claims=claims,
                        claim_history=history)


def test_a_variant_removed_and_put_back_leaves_the_first_definition_intact(tmp_path):
    store = Store(tmp_path / "out")
    _seen(store, tmp_path, {**SPEC, "claims": [CLAIM]})
    first = store.claim_history("s")["b-vs-a"]["first"]
    store.drop_runs_except("s", set())
    store.save_study("s", {"seeds": [0, 1], "variants": {"a": SPEC["variants"]["a"]}, "claims": []}, {}, "x.toml")
    assert store.claim_history("s")["b-vs-a"]["withdrawn"]
    store.save_study("s", {**SPEC, "claims": [CLAIM]}, {}, "x.toml")
    record = store.claim_history("s")["b-vs-a"]
    assert not record["withdrawn"] and not record["revised"] and record["first"] == first


def test_an_id_given_later_adopts_the_row_its_text_keyed_and_old_stores_migrate(tmp_path):
    store = Store(tmp_path / "out")
    bare = {k: v for k, v in CLAIM.items() if k != "id"}
    _seen(store, tmp_path, {"claims": [bare]})
    store.close()
    # a store from before ids, first texts and told changes: the claims table without those columns
    conn = sqlite3.connect(tmp_path / "out" / "nnstudy.db")
    conn.executescript("CREATE TABLE old AS SELECT study, text, first, recorded, added_after_results, revised, "
                       "withdrawn, source FROM claims; DROP TABLE claims; ALTER TABLE old RENAME TO claims;")
    conn.close()
    store = Store(tmp_path / "out")
    assert store.claim_history("s")[bare["text"]]["first_text"] == bare["text"]
    store.save_study("s", {**SPEC, "claims": [CLAIM]}, {}, "x.toml")  # now with an id, and seeds and configs known
    history = store.claim_history("s")
    assert list(history) == ["b-vs-a"] and not history["b-vs-a"]["revised"]
    assert history["b-vs-a"]["first"]["late"] == ["configs", "epochs", "seeds"]
    store.save_study("s", {**SPEC, "seeds": [0, 1, 2], "claims": [CLAIM]}, {}, "x.toml")
    assert store.claim_history("s")["b-vs-a"]["changes"] == {"seeds": "seeds 2 -> 3"}


def test_the_built_in_claims_redefined_after_results_show_as_revised_in_a_fresh_store():
    for name, key, metric in (("mnist-init", "R2.6-xavier", "act_std_ratio"),
                              ("mnist-activations", "R5.1-saturation", "saturated_fraction"),
                              ("mnist-loss", "R4.2-gradient", "first_layer_grad_norm")):
        spec = load_study(name).model_dump(mode="json")
        found = revisions(_no_runs(spec["claims"], {}))  # a fresh store: nothing on record
        assert found[key].revised and found[key].first["metric"] == metric, name
        assert "after results, as the study file says" in found[key].changes[0]
    claims = load_study("mnist-init").model_dump(mode="json")["claims"]
    r26 = revisions(_no_runs(claims, {}))["R2.6-xavier"]
    assert "0.84" in r26.changes[0] and "not a bound set before the results" in r26.changes[0]
    assert "set before the results" not in next(c for c in claims if c["id"] == "R2.6-xavier")["rationale"]


def test_a_declared_rewording_is_shown_reworded_not_revised_and_a_history_must_say_something(tmp_path):
    from nnstudy.config.claims import ClaimConfig
    from nnstudy.stats.claim_revisions import revisions

    reworded = {**CLAIM, "history": {"first_text": "b beats a (0.58 against 0.47)", "changed": "numbers not tested"}}
    redefined = {**CLAIM, "id": "other", "text": "b is not worse",
                 "history": {"first": {"direction": "less"}, "changed": "turned round"}}
    found = revisions(_no_runs([ClaimConfig(**reworded).model_dump(mode="json"),
                                ClaimConfig(**redefined).model_dump(mode="json")], {}))
    assert not found["b-vs-a"].revised and found["b-vs-a"].first is None  # the same definition: nothing to judge
    assert found["b-vs-a"].first_text == "b beats a (0.58 against 0.47)"
    assert found["b-vs-a"].changes == ("reworded after results, as the study file says: numbers not tested",)
    assert found["other"].revised and found["other"].first["direction"] == "less"  # a definition: revised
    with pytest.raises(ValueError, match="history needs first .*, first_text .* or added = true"):
        ClaimConfig(**{**CLAIM, "history": {"changed": "something"}})


def test_a_claim_declared_added_after_results_is_marked_so_in_a_fresh_store_and_only_it():
    from nnstudy.config.claims import ClaimConfig
    from nnstudy.stats.claim_revisions import revisions

    added = {**CLAIM, "history": {"added": True, "changed": "added on 2026-12-06 after the results"}}
    plain = {**CLAIM, "id": "plain", "text": "b is not worse"}
    found = revisions(_no_runs([ClaimConfig(**added).model_dump(mode="json"),
                                ClaimConfig(**plain).model_dump(mode="json")], {}))  # nothing on record
    assert found["b-vs-a"].added_after_results and not found["b-vs-a"].revised and found["b-vs-a"].first is None
    assert found["b-vs-a"].changes == ("added after results, as the study file says: added on 2026-12-06 after "
                                       "the results",)
    assert not found["plain"].added_after_results and found["plain"].changes == ()
    with pytest.raises(ValueError, match="history.added: a claim added after results has no earlier definition"):
        ClaimConfig(**{**CLAIM, "history": {"added": True, "first_text": "older words", "changed": "x"}})


def test_an_id_and_new_words_together_keep_a_text_keyed_record_through_the_declared_first_words(tmp_path):
    old = {k: v for k, v in CLAIM.items() if k != "id"} | {"text": "b beats a (0.58 against 0.47)"}
    store = Store(tmp_path / "out")
    _seen(store, tmp_path, {**SPEC, "claims": [old]})  # a store from before ids: the claim keyed by its words
    renamed = {**CLAIM, "history": {"first_text": old["text"], "changed": "numbers not tested"}}
    store.save_study("s", {**SPEC, "claims": [renamed]}, {}, "x.toml")
    history = store.claim_history("s")
    store.close()
    assert list(history) == ["b-vs-a"]  # taken over, not withdrawn beside a new one
    record = history["b-vs-a"]
    assert not record["withdrawn"] and not record["added_after_results"] and not record["revised"]
    assert record["first_text"] == old["text"] and record["text"] == CLAIM["text"]
