"""Each claim metric on hand-made cases where it must come out one way, and the other.

The probes are measured by `training/probes.py` on real tiny networks; the
metrics (`stats/claim_metrics.py`) read them, or the kept predictions, per run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnstudy.data import load_dataset
from nnstudy.registry import CLAIM_METRICS
from nnstudy.stats import claims  # noqa: F401  (registers the metrics)
from nnstudy.stats.claim_metrics import ClaimMetricError
from nnstudy.store.results import EpochRow, RunResult, StudyResults
from nnstudy.training.probes import flat_fraction, punishment
from test_probes import _prober as prober_and_pipeline


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_dataset("digits", None, tmp_path_factory.mktemp("cache")).subset(400, 150)


def _prober(model, data):
    return prober_and_pipeline(model, data)[0]


def _value(metric: str, run: RunResult, epoch: int = 1, results=None, **claim) -> float:
    name, _, arg = metric.partition("@")
    return CLAIM_METRICS.get(name)(run, epoch, {"metric": metric, **claim}, arg, results)


def _run(probes=None, history=None, predictions=None) -> RunResult:
    run = RunResult("r", "v", 0, "done", {})
    run.probes = probes or {}
    run.history = history or []
    run.predictions = predictions or {}
    return run


# ---------------------------------------------------------------- saturation: one rule for every activation


def test_saturation_is_the_share_of_flat_inputs_for_any_activation():
    z = torch.tensor([-8.0, -3.0, -0.5, 0.5, 3.0, 8.0])
    # ReLU is flat on its whole negative side: the first measure gave it 0 by construction.
    assert flat_fraction(nn.ReLU(), z) == pytest.approx(3 / 6)
    assert flat_fraction(nn.ReLU(), z.abs()) == 0.0
    # Sigmoid's derivative is at most 5% of its peak (0.25) only beyond |z| ~ 4.4: the tails.
    assert flat_fraction(nn.Sigmoid(), z) == pytest.approx(2 / 6)
    assert flat_fraction(nn.Sigmoid(), z / 10) == 0.0
    # Leaky ReLU (slope 0.01 = 1% of its peak 1) is flat below zero too; slope 0.2 (20%) is not.
    assert flat_fraction(nn.LeakyReLU(0.01), z) == pytest.approx(3 / 6)
    assert flat_fraction(nn.LeakyReLU(0.2), z) == 0.0


def test_saturation_probe_and_metric_on_a_network_driven_into_its_flat_regions(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 10))
    prober = _prober(model, digits)
    calm = prober.measure(model.state_dict(), shifts=False)
    with torch.no_grad():
        model[1].bias.fill_(-1e3)  # every ReLU input negative: all flat
        model[3].bias.fill_(50.0)  # every sigmoid input far in its upper tail: all flat
    driven = prober.measure(model.state_dict(), shifts=False)
    assert driven["flat|2"] == 1.0 and driven["flat|4"] == 1.0
    assert calm["flat|4"] < 0.5 and 0.0 < calm["flat|2"] < 1.0
    with torch.no_grad():
        pre = F.linear(prober.x.flatten(1), *_wb(prober.model[1]))
    assert calm["flat|2"] != driven["flat|2"]
    assert float((pre <= 0).double().mean()) == pytest.approx(driven["flat|2"])
    assert _value("saturation", _run({1: driven})) == 1.0
    assert _value("saturation", _run({1: calm})) == pytest.approx((calm["flat|2"] + calm["flat|4"]) / 2)


def _wb(layer):
    return layer.weight, layer.bias


# ---------------------------------------------------------------- dead units, equal variance, gradients


def test_dead_fraction_counts_units_that_never_fire(digits):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    prober = _prober(model, digits)
    with torch.no_grad():
        model[1].bias.fill_(1e3)
    alive = prober.measure(model.state_dict(), shifts=False)
    with torch.no_grad():
        model[1].bias[:2] = -1e4  # two of eight can never fire
    some_dead = prober.measure(model.state_dict(), shifts=False)
    assert alive["dead|2"] == 0.0 and some_dead["dead|2"] == pytest.approx(2 / 8)
    assert _value("dead_fraction", _run({1: some_dead})) == pytest.approx(0.25)


@pytest.mark.parametrize("stds, log_ratio", [((1.0, 1.0), 0.0), ((2.0, 1.0), 2 * math.log(0.5)),
                                             ((1.0, 3.0), 2 * math.log(3.0))])
def test_variance_metrics_are_in_variance_either_way(stds, log_ratio):
    run = _run({0: {"act_std|a": stds[0], "act_std|b": stds[1]}})
    assert _value("act_var_log_ratio", run, epoch=0) == pytest.approx(log_ratio)
    assert _value("act_var_imbalance", run, epoch=0) == pytest.approx(abs(log_ratio))
    assert _value("act_std_ratio", run, epoch=0) == pytest.approx(stds[1] / stds[0])  # the first measure, kept


def test_gradient_metrics_read_the_first_and_last_weight_layers():
    shrinking = _run({0: {"grad_norm|1": 0.01, "grad_norm|2": 0.1, "grad_norm|3": 1.0}})
    growing = _run({0: {"grad_norm|1": 5.0, "grad_norm|2": 2.0, "grad_norm|3": 1.0}})
    assert _value("first_layer_grad_norm", shrinking, 0) == 0.01 and _value("grad_norm_ratio", shrinking, 0) == 0.01
    assert _value("first_layer_grad_norm", growing, 0) == 5.0 and _value("grad_norm_ratio", growing, 0) == 5.0


# ---------------------------------------------------------------- punishment of misclassifications


def test_punishment_ratios_do_not_depend_on_the_loss_scale_and_come_out_either_way():
    y = torch.tensor([0, 0, 1])
    logits = torch.tensor([[4.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # image 1 misclassified, 0 and 2 correct
    ce = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    mse_mean = lambda z, t: (z - F.one_hot(t, 2).float()).pow(2).mean(1)  # noqa: E731
    mse_sum = lambda z, t: (z - F.one_hot(t, 2).float()).pow(2).sum(1)  # noqa: E731
    by_hand = F.cross_entropy(logits, y, reduction="none")
    assert punishment(logits, y, ce)["misclass_loss_ratio"] == pytest.approx(
        float(by_hand[1] / by_hand[[0, 2]].mean()), rel=1e-6)
    # MSE's penalty of a confident correct answer (4 where 1 was wanted) outweighs its mistake: ratio below 1.
    mean, summed = punishment(logits, y, mse_mean), punishment(logits, y, mse_sum)
    assert mean["misclass_loss_ratio"] < 1 < punishment(logits, y, ce)["misclass_loss_ratio"]
    for key in mean:
        assert mean[key] == pytest.approx(summed[key], rel=1e-6)  # mean or sum over classes: the same ratio
    assert math.isnan(punishment(logits[[0, 2]], y[[0, 2]], ce)["misclass_grad_ratio"])  # no mistakes: no ratio
    # The gradient ratio either way, by hand: d(CE)/dz = softmax - one-hot, d(MSE summed)/dz = 2 (z - one-hot).
    ce_norms = (logits.softmax(1) - F.one_hot(y, 2)).norm(dim=1)
    assert punishment(logits, y, ce)["misclass_grad_ratio"] == pytest.approx(
        float(ce_norms[1] / ce_norms[[0, 2]].mean()), rel=1e-5)
    assert summed["misclass_grad_ratio"] == pytest.approx(math.sqrt(2) / ((3 + 2) / 2), rel=1e-6)  # |(-1, 1)| / mean(3, 2)
    assert summed["misclass_grad_ratio"] < 1 < punishment(logits, y, ce)["misclass_grad_ratio"]


# ---------------------------------------------------------------- shapes of the architecture


def test_feature_map_depth_and_area_with_and_without_pooling(digits):
    conv = lambda pool: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(4, 6, 3, padding=1),  # noqa: E731
                                      nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    pooled, plain = conv(nn.MaxPool2d(2)), conv(nn.Identity())
    for m in (pooled, plain):
        m(torch.zeros(1, 1, 8, 8))
    a, b = _prober(pooled, digits).cost(), _prober(plain, digits).cost()
    assert (a["feature_depth"], a["feature_area"]) == (6, 16) and (b["feature_depth"], b["feature_area"]) == (6, 64)
    # Parameters by hand: the convolutions are the same (4*9+4, 6*4*9+6); the classifier sees 6*4*4 or 6*8*8 inputs.
    assert (a["params"], b["params"]) == (40 + 222 + 96 * 10 + 10, 40 + 222 + 384 * 10 + 10)
    assert a["flops_per_image"] < b["flops_per_image"]  # the second convolution and the classifier see a quarter
    redrawn = conv(nn.MaxPool2d(2))
    redrawn(torch.zeros(1, 1, 8, 8))
    assert _prober(redrawn, digits).cost() == a  # other weights, the same architecture: the same facts
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert "feature_area" not in _prober(mlp, digits).cost()
    assert _value("feature_area", _run({0: a}), 5) == 16


# ---------------------------------------------------------------- the history: overfitting gaps, speed


def test_generalization_gaps_either_way():
    over = _run(history=[EpochRow(1, 0.05, 0.99, 0.40, 0.90, 0.1, 1.0)])
    under = _run(history=[EpochRow(1, 0.50, 0.85, 0.30, 0.90, 0.1, 1.0)])
    assert _value("generalization_gap", over) == pytest.approx(0.09) and _value("loss_gap", over) == pytest.approx(0.35)
    assert _value("generalization_gap", under) == pytest.approx(-0.05) and _value("loss_gap", under) == pytest.approx(-0.2)
    assert math.isnan(_value("loss_gap", over, epoch=2))


def test_history_metrics_read_their_epoch_and_epochs_to_acc_moves_with_the_speed_of_learning():
    def learner(accs):  # EpochRow(epoch, train_loss, train_acc, test_loss, test_acc, lr, seconds)
        return _run(history=[EpochRow(e, 1 / e, a + 0.02, 2 / e, a, 0.1, 1.0) for e, a in enumerate(accs, 1)])

    fast, slow, never = learner([0.5, 0.92, 0.95]), learner([0.3, 0.6, 0.91]), learner([0.2, 0.3, 0.4])
    assert (_value("test_acc", fast, 2), _value("train_acc", fast, 2)) == (0.92, pytest.approx(0.94))
    assert (_value("train_loss", slow, 2), _value("test_loss", slow, 2)) == (0.5, 1.0)
    assert _value("test_acc", slow, 2) < _value("test_acc", fast, 2)  # the same epoch, the slower learner lower
    assert math.isnan(_value("test_acc", fast, 4))  # an epoch the run never reached
    assert [_value("epochs_to_acc", r, 3, threshold=0.9) for r in (fast, slow, never)] == [2.0, 3.0, 4.0]
    assert _value("epochs_to_acc", fast, 3, threshold=0.9) == _value("epochs_to_acc", learner([0.1, 0.9, 0.2]), 3,
                                                                      threshold=0.9)  # only the first crossing counts


# ---------------------------------------------------------------- per-class behaviour from the predictions


def _class_study(pairs: list[tuple[int, int]]) -> tuple[RunResult, StudyResults]:
    """A run whose test predictions are the given (true, predicted) pairs; classes cat, dog, deer, bird."""
    y = np.array([t for t, _ in pairs])
    run = _run(predictions={5: np.array([p for _, p in pairs])})
    study = StudyResults("s", "", ["v"], "v", [0], [5], ["cat", "dog", "deer", "bird"], y, {}, [run], out_dir=None)
    return run, study


def test_class_metrics_on_a_hand_made_confusion():
    # cat: 10 images, 6 right, 4 called dog; dog: 10, 7 right, 3 called cat; deer: 10, 9 right, 1 called bird;
    # bird: 10, 8 right, 2 called deer.
    pairs = ([(0, 0)] * 6 + [(0, 1)] * 4 + [(1, 1)] * 7 + [(1, 0)] * 3 + [(2, 2)] * 9 + [(2, 3)] + [(3, 3)] * 8
             + [(3, 2)] * 2)
    run, study = _class_study(pairs)
    assert _value("class_recall@cat", run, 5, study) == pytest.approx(0.6)
    assert _value("class_recall@deer", run, 5, study) == pytest.approx(0.9)  # a class recognised better reads higher
    mean_recall = (0.6 + 0.7 + 0.9 + 0.8) / 4
    assert _value("class_recall_vs_mean@cat", run, 5, study) == pytest.approx(0.6 - mean_recall)  # below: poorly
    assert _value("class_recall_vs_mean@deer", run, 5, study) == pytest.approx(0.9 - mean_recall)  # above
    assert _value("pair_error_rate@cat/dog", run, 5, study) == pytest.approx(7 / 40)
    # 10 errors: cat/dog 7, deer/bird 3. The lead is (7 - 3) / 10; deer/bird trails by as much.
    assert _value("pair_confusion_lead@cat/dog", run, 5, study) == pytest.approx(0.4)
    assert _value("pair_confusion_lead@deer/bird", run, 5, study) == pytest.approx(-0.4)
    # Among deer, bird and cat only, deer/bird is the most confused pair.
    assert _value("pair_confusion_lead@deer/bird@deer/bird/cat", run, 5, study) == pytest.approx(0.3)
    assert math.isnan(_value("class_recall@cat", run, 1, study))  # no predictions kept for epoch 1
    with pytest.raises(ClaimMetricError, match="'car' is not one of the study's classes"):
        _value("pair_error_rate@cat/car", run, 5, study)


def test_a_runs_confusion_is_counted_once_however_many_metrics_read_it(monkeypatch):
    """Claims, their first definitions and the index read the same (run, epoch) confusion many times; scikit-learn
    counts it once per results, and a second study's results count their own."""
    from nnstudy.stats import claim_metrics

    calls = []
    counted = claim_metrics.confusion
    monkeypatch.setattr(claim_metrics, "confusion", lambda *a, **k: calls.append(1) or counted(*a, **k))
    pairs = [(0, 0)] * 6 + [(0, 1)] * 4 + [(1, 1)] * 7 + [(1, 0)] * 3 + [(2, 2)] * 10 + [(3, 3)] * 10
    run, study = _class_study(pairs)
    values = [_value(m, run, 5, study) for m in ("class_recall@cat", "pair_error_rate@cat/dog", "class_recall@cat")]
    assert values == [pytest.approx(0.6), pytest.approx(7 / 40), pytest.approx(0.6)] and len(calls) == 1
    other_run, other = _class_study([(t, t) for t, _ in pairs])  # the same labels, every prediction right
    assert _value("class_recall@cat", other_run, 5, other) == 1.0 and len(calls) == 2


def test_a_pair_share_of_errors_does_not_fall_just_because_a_model_errs_less():
    def predictions(cat_dog: int, deer_bird: int) -> list[tuple[int, int]]:
        """40 images, 10 a class; `cat_dog` cats called dog and `deer_bird` deer called bird, the rest right."""
        return ([(0, 1)] * cat_dog + [(0, 0)] * (10 - cat_dog) + [(1, 1)] * 10 + [(2, 3)] * deer_bird
                + [(2, 2)] * (10 - deer_bird) + [(3, 3)] * 10)

    def both(cat_dog, deer_bird):
        run, study = _class_study(predictions(cat_dog, deer_bird))
        return (_value("pair_error_share@deer/bird", run, 5, study), _value("pair_error_rate@deer/bird", run, 5, study))

    a, better, shifted = both(6, 4), both(3, 2), both(4, 6)  # better: half the errors, the same mix
    assert a[0] == pytest.approx(0.4) and better[0] == pytest.approx(0.4)  # the share follows the mix...
    assert better[1] < a[1]  # ...where the share of all images falls with every error the model stops making
    assert shifted[0] == pytest.approx(0.6) and shifted[0] > a[0]  # and it moves when the mix does


FIVE = ["cat", "dog", "deer", "bird", "horse"]


def _confusing(errors: dict[tuple[int, int], int], per_class: int = 20) -> list[tuple[int, int]]:
    """(true, predicted) pairs: `per_class` images a class, `errors[(i, j)]` of class i called j, the rest right."""
    pairs = []
    for c in range(len(FIVE)):
        wrong = [(c, j) for (i, j), k in errors.items() if i == c for _ in range(k)]
        pairs += wrong + [(c, c)] * (per_class - len(wrong))
    return pairs


def _kept(a_errors: dict, b_errors: dict) -> float:
    """confusions_kept@A of B's run, with A's two seeds pooled (the same structure, different counts)."""
    a_half = {pair: k // 2 for pair, k in a_errors.items()}
    runs, y = [], None
    for variant, seed, errors in (("A", 0, a_errors), ("A", 1, a_half), ("B", 0, b_errors)):
        pairs = _confusing(errors)
        y = np.array([t for t, _ in pairs])
        run = RunResult(f"{variant}{seed}", variant, seed, "done", {})
        run.predictions = {5: np.array([p for _, p in pairs])}
        runs.append(run)
    study = StudyResults("s", "", ["A", "B"], "A", [0, 1], [5], FIVE, y, {}, runs, out_dir=None)
    return _value("confusions_kept@A", runs[-1], 5, study), study


def test_confusions_kept_moves_with_the_confusion_structure_not_with_the_number_of_errors():
    # A: cat/dog most, then deer/horse, bird/deer, cat/bird, dog/horse, deer/cat (ten pairs, six confused).
    a = {(0, 1): 8, (1, 0): 6, (2, 4): 6, (4, 2): 4, (3, 2): 4, (0, 3): 3, (1, 4): 2, (2, 0): 1}
    same_mix_fewer = {pair: max(1, k // 2) for pair, k in a.items()}  # B errs about half as often, same order
    kept, _ = _kept(a, same_mix_fewer)
    assert kept == pytest.approx(1.0, abs=0.05)  # every pair keeps its rank (ties aside)
    # The same counts moved onto other pairs: cat/dog's errors now bird/horse's, and so on (a shuffle of the pairs).
    moved = {(3, 4): 8, (4, 3): 6, (0, 2): 6, (2, 0): 4, (1, 3): 4, (0, 4): 3, (1, 2): 2, (3, 0): 1}
    shuffled, _ = _kept(a, moved)
    assert shuffled < 0.2  # the structure is gone, though B makes exactly as many errors as A
    # Only the least confused pairs reordered: most of the structure is kept, less than all of it.
    swapped = {**a, (1, 4): 0, (2, 0): 0, (3, 1): 2, (4, 1): 1}
    partly, study = _kept(a, swapped)
    assert shuffled < partly < kept
    with pytest.raises(ClaimMetricError, match="'Z' is not one of the study's variants"):
        _value("confusions_kept@Z", study.runs[-1], 5, study)
    assert math.isnan(_value("confusions_kept@A", study.runs[-1], 1, study))  # no predictions kept at epoch 1


def test_shift_agreement_is_one_for_a_model_blind_to_position_and_lower_for_one_that_sees_it(digits):
    blind = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        blind[1].weight.zero_()
        blind[1].bias.copy_(torch.arange(10.0))  # the same answer whatever the image
    torch.manual_seed(0)
    sighted = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    for model, expect_one in ((blind, True), (sighted, False)):
        probes = _prober(model, digits).measure(model.state_dict(), shifts=True)
        agreement = _value("shift_agreement@2", _run({1: probes}))
        drop = _value("shift_accuracy_drop@2", _run({1: probes}))
        assert (agreement == 1.0) == expect_one and (drop == 0.0) == expect_one, (agreement, drop)


# ---------------------------------------------------------------- measures that can see their effect (issue 25)


def _scaled_mlp(std: float | None, seed: int = 0) -> nn.Module:
    """A bias-free ReLU MLP 64-32-16-10; `std`: normal weights of that std (None: PyTorch's default init)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            if std is not None:
                nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
    return model


def test_backward_signal_slope_moves_with_a_common_weight_scale_where_the_gradient_ratio_cannot(digits):
    prober = _prober(_scaled_mlp(None), digits)
    probes = {std: prober.measure(_scaled_mlp(std).state_dict(), shifts=False) for std in (0.001, 0.01, 0.1, 1.0, None)}
    slope = {std: _value("backward_signal_slope", _run({0: p}), 0) for std, p in probes.items()}
    ratio = {std: _value("grad_norm_ratio", _run({0: p}), 0) for std, p in probes.items()}
    # The first measure is blind to the scale: every weight gradient scales alike (s^(L-1)).
    assert ratio[0.001] == pytest.approx(ratio[0.01], rel=1e-3)
    # The backward signal falls by the weight scale at each layer: ten times smaller weights, ln 10 lower slope.
    assert slope[0.001] == pytest.approx(slope[0.01] - math.log(10), abs=0.05)
    assert slope[0.001] < slope[0.01] < slope[0.1] < slope[1.0]
    assert slope[0.001] < slope[None] < slope[1.0]  # too small below the default, too large above
    # The first layer's gradient does see the scale: s^(L-1) = s^2 here while the outputs are small enough for the
    # softmax to stay near uniform (a hundredfold per tenfold step), and it keeps growing beyond.
    first = {std: _value("first_layer_grad_norm", _run({0: p}), 0) for std, p in probes.items()}
    assert first[0.01] / first[0.001] == pytest.approx(100, rel=0.05)
    assert first[0.01] < first[0.1] < first[1.0]
    # Without a scale change it stays put: another draw at the same scale moves it far less than a tenfold scale.
    other = _value("backward_signal_slope", _run({0: prober.measure(_scaled_mlp(0.01, seed=1).state_dict(),
                                                                    shifts=False)}), 0)
    assert abs(other - slope[0.01]) < 0.5 * math.log(10)
    other_first = _value("first_layer_grad_norm", _run({0: prober.measure(_scaled_mlp(0.01, seed=1).state_dict(),
                                                                         shifts=False)}), 0)
    assert 1 / 10 < other_first / first[0.01] < 10


def test_backward_signal_slope_is_nan_where_layers_do_not_pair_up():
    two_layers = _run({0: {"grad_norm|1": 1.0, "grad_norm|3": 1.0, "act_std|2": 1.0, "act_mean|2": 0.0}})
    assert math.isnan(_value("backward_signal_slope", two_layers, 0))
    hand = _run({0: {"grad_norm|1": 9.0, "grad_norm|3": 0.5, "grad_norm|5": 2.0,
                     "act_std|2": 0.3, "act_mean|2": 0.4, "act_std|4": 1.0, "act_mean|4": 0.0}})
    # backward signal: layer 3: 0.5 / 0.5 = 1, layer 5: 2 / 1 = 2; one step toward the input: ln(1 / 2)
    assert _value("backward_signal_slope", hand, 0) == pytest.approx(math.log(0.5))


def _trained_symmetry(init: str, data, steps: int = 60) -> tuple[float, torch.Tensor]:
    """An MLP 64-16-16-10 built by nnstudy with `init` (constant weights 0.05), trained full-batch on the digits:
    its symmetry_index metric (hidden layers) and its first layer's biases at the start."""
    from nnstudy.config.schema import ModelConfig
    from nnstudy.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="mlp", hidden=[16, 16], init=init, init_value=0.05), (1, 8, 8), 10)
    first_bias = next(m for m in model.modules() if isinstance(m, nn.Linear)).bias.detach().clone()
    prober, pipeline = prober_and_pipeline(model, data)
    x, y = pipeline.normalise(data.train_x), data.train_y
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return _value("symmetry_index", _run({1: prober.measure(model.state_dict(), shifts=False)})), first_bias


def test_random_biases_let_the_data_break_the_symmetry_that_zeroed_biases_fix(digits):
    kept, zero_bias = _trained_symmetry("constant", digits)
    broken, random_bias = _trained_symmetry("constant_random_bias", digits)
    assert torch.all(zero_bias == 0) and random_bias.abs().min() > 0 and random_bias.std() > 0
    assert kept == pytest.approx(1.0, abs=1e-9)  # by construction: every unit gets the same gradient
    assert broken < 0.999  # the data, through the biases' different gating, made the units differ
