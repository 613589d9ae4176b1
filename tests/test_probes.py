"""Mechanism probes against independent computations on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from nnstudy.config import RunConfig
from nnstudy.data import load_dataset
from nnstudy.data.augment import BatchPipeline
from nnstudy.training import GroupTrainer, TrainOptions
from nnstudy.training.losses import make_loss
from nnstudy.training.probes import Prober, shift_images, symmetry_index


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", None, tmp_path_factory.mktemp("cache")).subset(400, 150)


def _prober(model, data, loss="cross_entropy"):
    cfg = RunConfig.model_validate({"dataset": {"name": "digits"}, "train": {"loss": loss}})
    pipeline = BatchPipeline(*data.channel_stats(), 0, False, torch.device("cpu"))
    return Prober(model, data, pipeline, make_loss(cfg.train), torch.device("cpu")), pipeline


def _mlp(widths, act=nn.ReLU):
    layers = [nn.Flatten()]
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


def test_constant_init_gives_a_symmetry_index_of_one_and_random_init_far_less(digits):
    model = _mlp([64, 32, 16, 10])
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.05)
    prober, _ = _prober(model, digits)
    probes = prober.measure(model.state_dict(), shifts=False)
    assert probes["symmetry|1"] == pytest.approx(1.0) and probes["symmetry|3"] == pytest.approx(1.0)
    torch.manual_seed(0)
    random = _mlp([64, 32, 16, 10])
    assert prober.measure(random.state_dict(), shifts=False)["symmetry|1"] < 0.3
    # Independent: all pairs of rows of a random matrix, by hand.
    w = torch.randn(5, 7, dtype=torch.float64)
    pairs = [abs(float(F.cosine_similarity(w[i], w[j], dim=0))) for i in range(5) for j in range(5) if i != j]
    assert symmetry_index(w) == pytest.approx(sum(pairs) / len(pairs))
    assert symmetry_index(torch.zeros(4, 3)) == 1.0  # zero init: every unit a copy


def test_tiny_weights_make_gradient_norms_shrink_layer_by_layer(digits):
    # Sigmoid keeps the forward signal near 0.5, so what shrinks is the backward signal: x1e-3 x0.25 a layer.
    model = _mlp([64, 32, 32, 32, 32, 10], act=nn.Sigmoid)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1e-3)
            nn.init.zeros_(m.bias)
    prober, pipeline = _prober(model, digits)
    probes = prober.measure(model.state_dict(), shifts=False)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    norms = [probes[f"grad_norm|{n}"] for n in layers]
    assert all(a < b / 10 for a, b in zip(norms, norms[1:])), norms  # vanishing toward the input
    # Independent: autograd on the same batch, by hand.
    x, y = prober.x, prober.y
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for n in layers:
        assert probes[f"grad_norm|{n}"] == pytest.approx(float(dict(model.named_modules())[n].weight.grad.norm()), rel=1e-5)
        assert probes[f"weight_norm|{n}"] == pytest.approx(float(dict(model.named_modules())[n].weight.detach().norm()), rel=1e-6)


def test_activation_statistics_dead_and_saturated_units_match_a_hand_computation(digits):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 10))
    with torch.no_grad():
        model[1].bias[:3] = -1e3  # three units that can never fire
        model[3].weight.mul_(40)  # a sigmoid layer driven into saturation
    prober, _ = _prober(model, digits)
    probes = prober.measure(model.state_dict(), shifts=False)
    with torch.no_grad():
        h = F.relu(F.linear(prober.x.flatten(1), model[1].weight, model[1].bias))
        s = torch.sigmoid(F.linear(h, model[3].weight, model[3].bias))
    assert probes["act_mean|2"] == pytest.approx(float(h.mean()), rel=1e-5)
    assert probes["act_std|2"] == pytest.approx(float(h.std()), rel=1e-5)
    dead = float(((h > 0).sum(0) == 0).double().mean())
    assert dead >= 3 / 8 and probes["dead|2"] == pytest.approx(dead)
    saturated = float(((s < 0.02) | (s > 0.98)).double().mean())
    assert saturated > 0.5 and probes["saturated|4"] == pytest.approx(saturated)
    assert probes["saturated|2"] == 0.0  # ReLU does not saturate


def test_shift_probes_flops_and_parameters(digits):
    torch.manual_seed(0)
    model = _mlp([64, 32, 10])
    prober, pipeline = _prober(model, digits)
    probes = prober.measure(model.state_dict(), shifts=True)
    x = digits.test_x[:3]
    shifted = shift_images(x, 2)
    assert torch.equal(shifted[..., 2:, 2:], x[..., :-2, :-2]) and not shifted[..., :2, :].any() and not shifted[..., :, :2].any()
    with torch.no_grad():
        base = model(pipeline.normalise(prober.test_x)).argmax(1)
        moved = model(pipeline.normalise(shift_images(prober.test_x, 4))).argmax(1)
    assert probes["shift_acc@0"] == pytest.approx(float((base == prober.test_y).double().mean()))
    assert probes["shift_agree@0"] == 1.0
    assert probes["shift_agree@4"] == pytest.approx(float((moved == base).double().mean()))
    cost = prober.cost()
    assert cost["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert cost["flops_per_image"] == 2 * (64 * 32 + 32 * 10)  # multiply-adds of the two matmuls


def _cfg(**model):
    return RunConfig.model_validate({
        "dataset": {"name": "digits"}, "model": {"kind": "cnn", "channels": [8], "kernel": 3, "padding": 1,
                                                 "hidden": [16], "norm": "batch", **model},
        "train": {"lr": 0.05, "batch_size": 32, "epochs": 2}})


def test_probes_are_the_same_stacked_or_alone_and_never_change_the_numbers(digits):
    cfg = _cfg()
    stacked = GroupTrainer(cfg, digits, [0, 1], TrainOptions(progress=False, probes=True))
    stacked.fit(lambda tr, p: None, predict_epochs=[1])
    plain = GroupTrainer(cfg, digits, [0, 1], TrainOptions(progress=False, probes=False))
    plain.fit(lambda tr, p: None)
    for a, b in zip(stacked.states, plain.states):
        assert [vars(r) | {"seconds": 0} for r in a.history] == [vars(r) | {"seconds": 0} for r in b.history]
    assert set(stacked.states[0].probes) == {0, 1, 2}
    assert "shift_acc@2" in stacked.states[0].probes[1] and "flops_per_image" in stacked.states[0].probes[0]
    alone = GroupTrainer(cfg, digits, [1], TrainOptions(vectorize=False, progress=False, probes=True))
    alone.fit(lambda tr, p: None, predict_epochs=[1])
    for epoch, values in alone.states[0].probes.items():
        for key, value in values.items():
            if key != "step_ms":
                assert stacked.states[1].probes[epoch][key] == pytest.approx(value, rel=1e-3, abs=1e-5), (epoch, key)


# ---------------------------------------------------------------- claim metrics on networks with and without the effect


def _metric(name: str, probes: dict) -> float:
    """A claim metric (stats/claim_metrics.py) read from one measurement, as a run's epoch-0 probes."""
    from nnstudy.registry import CLAIM_METRICS
    from nnstudy.stats import claims  # noqa: F401  (registers the metrics)
    from nnstudy.store.results import RunResult

    run = RunResult("r", "v", 0, "done", {})
    run.probes, run.history, run.predictions = {0: probes}, [], {}
    return CLAIM_METRICS.get(name)(run, 0, {"metric": name}, "", None)


def _relu_mlp(std, seed: int) -> nn.Module:
    """A ReLU MLP 64-32-32-10, zero biases, normal weights of std `std(fan_in)`."""
    torch.manual_seed(seed)
    model = _mlp([64, 32, 32, 10])
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std(m.in_features))
            nn.init.zeros_(m.bias)
    return model


def test_activation_variance_stays_level_under_he_scaling_and_moves_with_any_other_scale(digits):
    prober, _ = _prober(_relu_mlp(lambda n: 0.1, 0), digits)
    he, small, large = ([_metric("act_var_log_ratio", prober.measure(_relu_mlp(std, seed).state_dict(), shifts=False))
                         for seed in range(3)]
                        for std in (lambda n: math.sqrt(2 / n), lambda n: 0.01, lambda n: 1.0))
    assert all(abs(v) < 0.3 for v in he)  # He's factor 2/n keeps a ReLU layer's variance: equal, whatever the draw
    # One layer on, the variance is multiplied by n * std^2 / 2 (n = 32 inputs): 0.0016 or 16.
    assert small == pytest.approx([math.log(32 * 0.01 ** 2 / 2)] * 3, abs=0.3)
    assert large == pytest.approx([math.log(32 * 1.0 / 2)] * 3, abs=0.3)
    imbalance = _metric("act_var_imbalance", prober.measure(_relu_mlp(lambda n: 0.01, 0).state_dict(), shifts=False))
    assert imbalance == pytest.approx(-small[0])  # either way away from equal counts as imbalance


def test_sigmoid_driven_into_its_tails_saturates_and_starves_the_first_layer_of_gradient(digits):
    def sigmoid_mlp(seed: int, drive: float) -> nn.Module:
        torch.manual_seed(seed)
        model = _mlp([64, 32, 32, 10], act=nn.Sigmoid)
        with torch.no_grad():
            model[1].weight.mul_(drive)  # large first-layer inputs: the first sigmoid layer sits in its tails
        return model

    prober, _ = _prober(sigmoid_mlp(0, 1.0), digits)
    calm, driven = ([prober.measure(sigmoid_mlp(seed, drive).state_dict(), shifts=False) for seed in range(3)]
                    for drive in (1.0, 30.0))
    assert all(_metric("saturated_fraction", p) == 0.0 for p in calm)
    assert all(_metric("saturated_fraction", p) > 0.3 for p in driven)
    # Saturation gates the first layer's gradient through sigmoid's near-zero slope; the last layer's is untouched.
    calm_ratio, driven_ratio = ([_metric("grad_norm_ratio", p) for p in ps] for ps in (calm, driven))
    assert max(driven_ratio) < min(calm_ratio) / 2
    assert max(calm_ratio) < 3 * min(calm_ratio)  # without saturation, other draws stay within a small factor
