"""CUDA: the same engine on the GPU (skipped where there is none)."""

import json
import math

import pytest
import torch

from nnstudy.cli import main
from nnstudy.config import RunConfig
from nnstudy.data import load_dataset
from nnstudy.training import GroupTrainer, TrainOptions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", None, tmp_path_factory.mktemp("cache")).subset(1000, 300)


def _cfg(**train):
    return RunConfig.model_validate({
        "dataset": {"name": "digits", "crop_padding": 1, "flip": True},
        "model": {"kind": "cnn", "channels": [8, 8], "kernel": 3, "padding": 1, "hidden": [32], "norm": "batch"},
        "train": {"lr": 0.05, "batch_size": 32, "epochs": 4, **train},
    })


def _fit(cfg, data, seeds, device, vectorize=True):
    trainer = GroupTrainer(cfg, data, seeds, TrainOptions(device=device, vectorize=vectorize, progress=False))
    preds = {}
    trainer.fit(lambda tr, p: preds.update(p))
    return trainer, preds


def test_stacked_seeds_match_seeds_alone_on_cuda(digits):
    # cuDNN runs the grouped and the plain convolution with different kernels, so float
    # rounding differs; over many epochs that grows chaotically. So: one epoch of training
    # compared closely, and the same weights evaluated both ways compared exactly.
    cfg = _cfg(epochs=1)
    stacked, sp = _fit(cfg, digits, [0, 1, 2], "cuda")
    for k, seed in enumerate([0, 1, 2]):
        alone, ap = _fit(cfg, digits, [seed], "cuda", vectorize=False)
        a, b = stacked.states[k].history[0], alone.states[0].history[0]
        for field in ("train_loss", "test_loss"):
            assert math.isclose(getattr(a, field), getattr(b, field), rel_tol=1e-3), (seed, field, a, b)
        for field in ("train_acc", "test_acc"):  # a few images may flip
            assert abs(getattr(a, field) - getattr(b, field)) <= 0.01, (seed, field, a, b)
        assert (sp[k] == ap[0]).float().mean().item() > 0.95, seed
        # The stacked forward itself: seed k's weights in a plain model give the same outputs.
        alone.restore([stacked.checkpoint(k)])
        loss_a, acc_a, preds_a = alone._evaluate()
        loss_s, acc_s, preds_s = stacked._evaluate()
        assert torch.equal(preds_a[0], preds_s[k]), seed
        assert math.isclose(loss_a[0], loss_s[k], rel_tol=1e-4), seed


def test_cuda_matches_cpu_closely(digits):
    cfg = _cfg()
    gpu, _ = _fit(cfg, digits, [0, 1], "cuda")
    cpu, _ = _fit(cfg, digits, [0, 1], "cpu")
    for k in range(2):
        assert abs(gpu.states[k].history[-1].test_acc - cpu.states[k].history[-1].test_acc) < 0.05


def test_bf16_autocast_trains_on_cuda(digits):
    bf16, _ = _fit(_cfg(precision="bf16"), digits, [0, 1], "cuda")
    fp32, _ = _fit(_cfg(), digits, [0, 1], "cuda")
    for k in range(2):
        low, full = bf16.states[k].history, fp32.states[k].history
        assert low[-1].train_loss < low[0].train_loss, [r.train_loss for r in low]
        assert low[-1].test_acc > full[-1].test_acc - 0.1, (low[-1], full[-1])


def test_cli_runs_a_study_on_cuda(tmp_path, capsys):
    study = tmp_path / "s.toml"
    study.write_text('name = "g"\nseeds = [0, 1]\n[dataset]\nname = "digits"\n[model]\nkind = "mlp"\nhidden = [32]\n'
                     '[train]\nepochs = 2\nbatch_size = 32\nlr = 0.05\n')
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "--device", "cuda", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    config = json.loads((out / "g" / "runs" / "baseline" / "seed-0" / "config.json").read_text())
    assert config["device"] == "cuda"
