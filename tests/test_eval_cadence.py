"""A long run evaluates the test set and probes every few epochs: the training is the same, the looks fewer."""

import math

import pytest

from nnstudy.config import RunConfig
from nnstudy.config.load import config_hash
from nnstudy.config.schema import CURVE_POINTS, StudyConfig, evaluates, evaluation_every
from nnstudy.data import load_dataset
from nnstudy.history import EpochRow
from nnstudy.store import Store
from nnstudy.training import GroupTrainer, TrainOptions

from studies import run_args, tiny_study


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", None, tmp_path_factory.mktemp("cache")).subset(300, 100)


def _cfg(**train):
    return RunConfig.model_validate({"dataset": {"name": "digits"}, "model": {"kind": "mlp", "hidden": [16]},
                                     "train": {"lr": 0.05, "batch_size": 32, "epochs": 7, **train}})


def _fit(cfg, data, **fit):
    trainer = GroupTrainer(cfg, data, [0, 1], TrainOptions(progress=False, probes=True))
    kept = {}
    trainer.fit(lambda tr, preds: kept.update({tr.epoch: sorted(preds)}), **fit)
    return trainer, kept


def test_the_cadence_by_default_and_when_set():
    assert evaluation_every(_cfg(epochs=CURVE_POINTS).train) == 1
    assert evaluation_every(_cfg(epochs=CURVE_POINTS + 1).train) == 2
    assert evaluation_every(_cfg(epochs=1000).train) == 10
    assert evaluation_every(_cfg(epochs=1000, eval_every=1).train) == 1
    t = _cfg(epochs=7, eval_every=3).train
    assert [e for e in range(1, 8) if evaluates(t, e)] == [1, 3, 6, 7]
    assert [e for e in range(1, 8) if evaluates(t, e, also={4})] == [1, 3, 4, 6, 7]


def test_evaluated_epochs_only_and_training_unchanged(digits):
    every, _ = _fit(_cfg(), digits, predict_epochs=[2])
    sparse, kept = _fit(_cfg(eval_every=3), digits, predict_epochs=[2], eval_epochs=[5])
    looked = [1, 2, 3, 5, 6, 7]  # the first, the cadence (3, 6), a report epoch (2), a claim epoch (5), the last
    for k in range(2):
        rows, full = sparse.states[k].history, every.states[k].history
        assert [r.epoch for r in rows] == list(range(1, 8))
        assert [r.epoch for r in rows if not math.isnan(r.test_acc)] == looked
        assert all(math.isnan(r.test_loss) for r in rows if r.epoch not in looked)
        # Looking less often changes nothing the training computes, to the last bit.
        assert [(r.train_loss, r.train_acc) for r in rows] == [(r.train_loss, r.train_acc) for r in full]
        assert [(r.test_loss, r.test_acc) for r in rows if r.epoch in looked] == \
            [(r.test_loss, r.test_acc) for r in full if r.epoch in looked]
        assert sorted(sparse.states[k].probes) == [0, *looked]
        assert sorted(every.states[k].probes) == list(range(8))
        assert not sparse.states[k].diverged
    assert kept == {e: ([0, 1] if e in (2, 7) else []) for e in range(1, 8)}


def test_the_cadence_is_not_part_of_a_runs_identity():
    assert config_hash(_cfg(eval_every=5), 0, "d") == config_hash(_cfg(), 0, "d")
    assert config_hash(_cfg(lr=0.1), 0, "d") != config_hash(_cfg(), 0, "d")


def test_a_metric_that_needs_every_epoch_refuses_a_cadence():
    def study(eval_every):
        return {"name": "s", "seeds": [0, 1], "base": {"dataset": {"name": "digits"}},
                "variants": {"a": {"dataset": {"name": "digits"}, "train": {"epochs": 4, "eval_every": eval_every}},
                             "b": {"dataset": {"name": "digits"}, "train": {"epochs": 4}}},
                "claims": [{"text": "b first", "source": "x", "metric": "epochs_to_acc", "threshold": 0.5,
                            "variant": "b", "baseline": "a", "direction": "less"}]}
    StudyConfig.model_validate(study(1))
    with pytest.raises(ValueError, match="eval_every = 1"):
        StudyConfig.model_validate(study(2))


def test_not_evaluated_epochs_come_back_from_the_store_as_nan(tmp_path):
    store = Store(tmp_path)
    store.save_study("s", {"claims": []}, {}, "s.toml")
    rid = store.sync_run("s", "a", 0, {}, "h", "d", tmp_path / "r")[0].id
    rows = [EpochRow(1, 0.5, 0.8, 0.6, 0.7, 0.01, 1.0), EpochRow(2, 0.4, 0.85, math.nan, math.nan, 0.01, 1.0)]
    store.record_epochs({rid: rows})
    back = store.epochs(rid)
    assert (back[0].test_loss, back[0].test_acc) == (0.6, 0.7)
    assert math.isnan(back[1].test_loss) and math.isnan(back[1].test_acc) and back[1].train_acc == 0.85


def test_a_study_with_a_cadence_runs_reports_and_says_so(cli, tmp_path):
    study = tmp_path / "tiny.toml"
    study.write_text(tiny_study(epochs=5, report_epochs=[2]).replace("epochs = 5", "epochs = 5\neval_every = 4"))
    result = cli(*run_args(study, tmp_path / "out", tmp_path / "cache"))
    assert result.rc == 0, result.err
    store = Store(tmp_path / "out")
    for run in store.runs("tiny"):
        rows = store.epochs(run.id)
        assert [r.epoch for r in rows if not math.isnan(r.test_acc)] == [1, 2, 4, 5]
    assert (tmp_path / "out" / "tiny" / "report.html").exists()
