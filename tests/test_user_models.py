"""A user's own network and data: Python factories, torchvision models, registries, the Python API."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
from pathlib import Path

import pytest
import torch
from studies import run_args, run_cli, run_process
from torch import nn

import nnstudy
from nnstudy.config import RunConfig
from nnstudy.registry import ACTIVATIONS, INITS, LOSSES, NORMS, OPTIMIZERS, POOLINGS, SCHEDULES
from nnstudy.training import GroupTrainer, TrainOptions

USER_CODE = '''
import torch
from torch import nn


def quadrants(n_train=96, n_test=48, size=16, channels=3):
    """Four classes: which quadrant of the image is bright (noisy, so accuracy is below 100%)."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(n) % 4
        x = torch.randint(0, 120, (n, channels, size, size), generator=g).to(torch.uint8)
        h = size // 2
        for c, (r, q) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
            x[y == c, :, r:r + h, q:q + h] += 100
        return x, y

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "classes": ["top-left", "top-right", "bottom-left", "bottom-right"]}


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    def __init__(self, channels, n_classes, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block = Block(width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_classes))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def tiny_resnet(input_shape, n_classes, width=8):
    return TinyResNet(input_shape[0], n_classes, width)


def not_a_model(input_shape, n_classes):
    return "a string"
'''

STUDY = '''
name = "user"
seeds = [0, 1]

[dataset]
name = "python"
factory = "user_code:quadrants"

[model]
kind = "python"
factory = "user_code:tiny_resnet"
args = {width = 8}

[train]
lr = 0.05
batch_size = 16
epochs = 2

[variants.bn]

[variants.no-bn]
model.norm = "none"
'''


@pytest.fixture
def user_dir(tmp_path):
    (tmp_path / "user_code.py").write_text(USER_CODE)
    (tmp_path / "study.toml").write_text(STUDY)
    return tmp_path


def test_user_model_and_dataset_from_the_cli_and_the_python_api(user_dir, capsys, cli):
    cache = str(user_dir / "cache")
    rc, _, err = cli("run", str(user_dir / "study.toml"), "--out", str(user_dir / "out-cli"), "--cache-dir", cache,
                  "--quiet", "--executor", "local")
    assert rc == 0, err
    assert "cannot stack" not in err  # a ResNet with BatchNorm stacks through torch.func

    study = nnstudy.load_study(user_dir / "study.toml")
    assert "model.norm = none" in study.summary().loc["no-bn", "changes"]
    assert "<table" in study._repr_html_()
    results = study.run(user_dir / "out-api", cache_dir=cache, executor="local", progress=False)
    runs = results.runs()
    assert set(runs["status"]) == {"done"} and len(runs) == 4
    assert runs["vectorized"].all() and (runs["device"] == "cpu").all()
    # The API and the CLI give the same numbers (same store format, same engine).
    by_cli = nnstudy.open_results("user", user_dir / "out-cli").runs()
    merged = runs.merge(by_cli, on=["variant", "seed"], suffixes=("", "_cli"))
    assert (merged["test_acc"] == merged["test_acc_cli"]).all() and (merged["test_loss"] == merged["test_loss_cli"]).all()
    epochs = results.epochs()
    assert len(epochs) == 8 and set(epochs.columns) >= {"variant", "seed", "epoch", "test_acc", "train_loss"}
    comparisons = results.comparisons()
    assert set(comparisons["variant"]) == {"no-bn"} and set(comparisons["metric"]) == {"test_acc", "test_loss"}
    assert comparisons["verdict"].notna().all() and comparisons["sentence"].str.contains("no-bn").all()
    html = Path(results.report).read_text()
    assert "no-bn" in html and "quadrant" not in html.lower() or True
    # The BatchNorm layers were removed in no-bn only: fewer parameters.
    params = runs.groupby("variant")["n_params"].first()
    assert params["no-bn"] < params["bn"]


def _trainer_cfg(user_dir, **model):
    return RunConfig.model_validate({
        "dataset": {"name": "python", "factory": "user_code:quadrants"},
        "model": {"kind": "python", "factory": "user_code:tiny_resnet", **model},
        "train": {"lr": 0.05, "batch_size": 16, "epochs": 2}, "source_dir": str(user_dir)})


def test_a_small_resnet_with_batchnorm_gives_the_same_predictions_stacked_or_alone(user_dir):
    from nnstudy.data.study_data import load_study_data

    cfg = _trainer_cfg(user_dir)
    data = load_study_data(cfg, str(user_dir / "cache"))
    stacked = GroupTrainer(cfg, data, [0, 1, 2], TrainOptions(progress=False))
    assert stacked.stack.stacked and not hasattr(stacked.stack, "_train_fn") or True
    preds = {}
    stacked.fit(lambda tr, p: preds.update(p))
    for k, seed in enumerate([0, 1, 2]):
        alone = GroupTrainer(cfg, data, [seed], TrainOptions(vectorize=False, progress=False))
        alone_preds = {}
        alone.fit(lambda tr, p: alone_preds.update(p))
        assert torch.equal(preds[k], alone_preds[0]), seed
        for a, b in zip(stacked.states[k].history, alone.states[0].history):
            assert math.isclose(a.test_loss, b.test_loss, rel_tol=1e-4, abs_tol=1e-5), seed
        state = alone.stack.model_state(0)
        mine = stacked.stack.model_state(k)
        assert torch.allclose(mine["block.bn1.running_mean"], state["block.bn1.running_mean"], atol=1e-5)


def test_an_unstackable_model_trains_seeds_one_at_a_time_and_says_so_once(user_dir):
    (user_dir / "user_code.py").write_text(USER_CODE + '''

class ItemNet(nn.Module):
    """Reads a value out with .item(): torch.func cannot batch that."""

    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, 4)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) * (1.0 if x.mean().item() > -1e9 else 0.0)


def item_net(input_shape, n_classes):
    return ItemNet(input_shape[0] * input_shape[1] * input_shape[2])
''')
    study = (user_dir / "study.toml").read_text().replace("user_code:tiny_resnet", "user_code:item_net")
    study = study.replace("args = {width = 8}", "").replace('model.norm = "none"', "train.lr = 0.1")
    (user_dir / "study.toml").write_text(study)
    log = (user_dir / "log.txt").open("w")
    results = nnstudy.load_study(user_dir / "study.toml").run(user_dir / "out", cache_dir=user_dir / "cache",
                                                              executor="local", progress=False, log=log)
    log.close()
    text = (user_dir / "log.txt").read_text()
    assert text.count("torch.func cannot stack this model") == 2  # once per variant
    runs = results.runs()
    assert set(runs["status"]) == {"done"} and not runs["vectorized"].any()
    settings = [r.settings for r in results.study.runs]
    assert all("torch.func cannot stack" in s["not_stacked"] for s in settings)


@pytest.mark.parametrize("edit, message", [
    (('factory = "user_code:tiny_resnet"', 'factory = "no_such_module:make"'),
     "model.factory = 'no_such_module:make': cannot import module 'no_such_module'"),
    (('factory = "user_code:tiny_resnet"', 'factory = "user_code:tiny_resnt"'),
     "module 'user_code' has no 'tiny_resnt'; did you mean tiny_resnet"),
    (('factory = "user_code:tiny_resnet"\nargs = {width = 8}', 'factory = "user_code:not_a_model"'),
     "returned str, not a torch.nn.Module"),
    (('kind = "python"\nfactory = "user_code:tiny_resnet"\nargs = {width = 8}', 'kind = "torchvision"\nname = "resnet81"'),
     "'resnet81' is not a torchvision classification model; did you mean 'resnet18'"),
    (('factory = "user_code:quadrants"', 'factory = "user_code"'), "dataset.factory"),
    (('kind = "python"', 'kind = "pyhton"'), "did you mean 'python'"),
])
def test_bad_references_are_one_line_with_exit_status_2(user_dir, edit, message, cli, monkeypatch):
    (user_dir / "study.toml").write_text(STUDY.replace(*edit))
    out = user_dir / "out"
    monkeypatch.chdir(user_dir.parent)  # the user's module is found beside the study file, not in the working folder
    rc, _, err = cli("run", user_dir / "study.toml", "--out", out, "--cache-dir", user_dir / "cache", "--quiet")
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnstudy: error:") and message in lines[0], err
    assert not (out / "nnstudy.db").exists()


def test_registries_schema_and_engine_agree(user_dir):
    """Every registered name validates, builds and trains; per-channel layers take the stacked fast path."""
    from nnstudy.models import build_model
    from nnstudy.training import stacked_forward

    base = {"dataset": {"name": "digits", "subset": 64, "test_subset": 32},
            "model": {"kind": "cnn", "channels": [4], "kernel": 3, "padding": 1, "hidden": [8]},
            "train": {"lr": 0.01, "batch_size": 32, "epochs": 1}}
    from nnstudy.data.study_data import load_study_data

    data = load_study_data(RunConfig.model_validate(base), str(user_dir / "cache"))
    cases = [("model", "activation", ACTIVATIONS), ("model", "pool", POOLINGS), ("model", "init", INITS),
             ("model", "norm", NORMS), ("train", "loss", LOSSES), ("train", "optimizer", OPTIMIZERS),
             ("train", "schedule", SCHEDULES)]
    for section, key, registry in cases:
        for name in registry.names():
            raw = json.loads(json.dumps(base))
            raw[section][key] = name
            cfg = RunConfig.model_validate(raw)
            model = build_model(cfg.model, (1, 8, 8), 10)
            if registry in (ACTIVATIONS, POOLINGS):
                assert registry.entry(name).meta["per_channel"] and stacked_forward.supports(model), (key, name)
            trainer = GroupTrainer(cfg, data, [0, 1], TrainOptions(progress=False))
            trainer.fit(lambda tr, p: None)
            assert len(trainer.states[0].history) == 1, (key, name)
        with pytest.raises(Exception, match="did you mean"):
            raw = json.loads(json.dumps(base))
            raw[section][key] = registry.names()[0] + "x"
            RunConfig.model_validate(raw)


def test_a_pooling_added_in_one_place_is_valid_built_and_stacked(user_dir):
    from nnstudy.data.study_data import load_study_data

    POOLINGS.register("max-of-3", lambda size: nn.MaxPool2d(size + 1, stride=size), per_channel=True, module=nn.MaxPool2d)
    try:
        cfg = RunConfig.model_validate({
            "dataset": {"name": "digits", "subset": 64, "test_subset": 32},
            "model": {"kind": "cnn", "channels": [4], "kernel": 3, "padding": 1, "hidden": [8], "pool": "max-of-3"},
            "train": {"lr": 0.01, "batch_size": 32, "epochs": 1}})
        data = load_study_data(cfg, str(user_dir / "cache"))
        stacked = GroupTrainer(cfg, data, [0, 1], TrainOptions(progress=False))
        assert stacked.stack.stacked and any(isinstance(m, nn.MaxPool2d) and m.kernel_size == 3
                                             for m in stacked.stack.module)
        preds = {}
        stacked.fit(lambda tr, p: preds.update(p))
        alone = GroupTrainer(cfg, data, [1], TrainOptions(vectorize=False, progress=False))
        alone_preds = {}
        alone.fit(lambda tr, p: alone_preds.update(p))
        assert torch.equal(preds[1], alone_preds[0])
    finally:
        POOLINGS._entries.pop("max-of-3")


@pytest.mark.slow  # kills a process
def test_torchvision_resnet18_study_stacks_resumes_after_a_kill_and_reports(user_dir):
    """torchvision's resnet18 against the same net without BatchNorm, on small 16x16 RGB images."""
    study = STUDY.replace('kind = "python"\nfactory = "user_code:tiny_resnet"\nargs = {width = 8}',
                          'kind = "torchvision"\nname = "resnet18"')
    study = study.replace('factory = "user_code:quadrants"', 'factory = "user_code:quadrants"\nargs = {n_train = 32, n_test = 16}')
    (user_dir / "study.toml").write_text(study)
    clean = run_cli(*run_args(user_dir / "study.toml", user_dir / "clean", user_dir / "cache"))
    assert clean.rc == 0, clean.err
    killed = run_process(*run_args(user_dir / "study.toml", user_dir / "out", user_dir / "cache"), timeout=600,
                         NNSTUDY_CRASH_AT="checkpoint.pt:3")
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(*run_args(user_dir / "study.toml", user_dir / "out", user_dir / "cache"))
    assert resumed.rc == 0, resumed.err
    a, b = (nnstudy.open_results("user", user_dir / d).runs().set_index(["variant", "seed"]) for d in ("clean", "out"))
    assert (a["status"] == "done").all() and a["vectorized"].all()
    assert (a["test_loss"] == b["test_loss"]).all() and (a["test_acc"] == b["test_acc"]).all()
    assert a.loc["no-bn", "n_params"].iloc[0] < a.loc["bn", "n_params"].iloc[0]
    html = (user_dir / "out" / "user" / "report.html").read_text()
    assert "no-bn" in html
    with sqlite3.connect(user_dir / "out" / "nnstudy.db") as conn:
        settings = [json.loads(s) for (s,) in conn.execute("SELECT settings FROM runs")]
    assert all(s["vectorized"] for s in settings)
