"""The metrics a claim can name (registry.CLAIM_METRICS): one value per run, per seed.

Each entry is `fn(run, epoch, claim, arg, results) -> float` (nan when the run
lacks the value), where `arg` is what follows the first "@" in the claim's
metric ("shift_agreement@2": "2"). Entry metadata:

- label: what the metric is, in words, for the report;
- fraction: a share in [0, 1] (shown in % and pp);
- exact: the same for every seed by construction (parameters, FLOPs, shapes):
  a claim on it is a fact that holds or not, never a statistical verdict;
- report_epochs: measured on the study's report epochs (and the last) only;
- arg: an example argument, for metrics that need one;
- resolution: the metric's step, the floor of the evidence rule's spread (`stats/resolution.py`):
  "test_images", "train_images", "shift_images", "class_images" or "epoch"; none: 4 significant digits.

Every metric is defined the same way for every variant it compares, so that
a claim on it can come out either way: no constant stands in for a variant it
does not suit, and metrics compared across losses are ratios a constant factor
in the loss cancels from.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from nnstudy.history import per_layer
from nnstudy.registry import CLAIM_METRICS
from nnstudy.stats.per_class import confusion


class ClaimMetricError(ValueError):
    """A claim's metric cannot be computed for this study (e.g. a class name it does not have)."""


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _layers(run, epoch: int, probe: str) -> list[float]:
    return per_layer(run.probes.get(epoch, {}), probe)


def _probe(run, epoch: int, name: str) -> float:
    return run.probes.get(epoch, {}).get(name, math.nan)


# ---------------------------------------------------------------- the training history


def _history(field: str):
    def value(run, epoch, claim, arg, results):
        row = run.at_epoch(epoch)
        return getattr(row, field) if row is not None else math.nan
    return value


for _field in ("test_acc", "test_loss", "train_acc", "train_loss"):
    CLAIM_METRICS.register(_field, _history(_field), fraction=_field.endswith("acc"), label=_field.replace("_", " "),
                           **({"resolution": f"{_field[:-4]}_images"} if _field.endswith("acc") else {}))


@CLAIM_METRICS.register("generalization_gap", fraction=True, resolution="test_images",
                        label="train accuracy (over the epoch, as trained) minus test accuracy")
def _acc_gap(run, epoch, claim, arg, results):
    row = run.at_epoch(epoch)
    return row.train_acc - row.test_acc if row is not None else math.nan


@CLAIM_METRICS.register("loss_gap", label="test loss minus train loss (over the epoch, as trained)")
def _loss_gap(run, epoch, claim, arg, results):
    row = run.at_epoch(epoch)
    return row.test_loss - row.train_loss if row is not None else math.nan


@CLAIM_METRICS.register("epochs_to_acc", resolution="epoch", label="first epoch reaching the threshold test accuracy")
def _epochs_to(run, epoch, claim, arg, results):
    """Never reached: one past the last epoch (a censored value, so the seed still counts)."""
    if not run.history:
        return math.nan
    return float(next((r.epoch for r in run.history if r.test_acc >= claim["threshold"]), run.history[-1].epoch + 1))


# ---------------------------------------------------------------- probes of the network's inside


@CLAIM_METRICS.register("dead_fraction", fraction=True, label="fraction of dead units (never positive on the probe "
                                                              "batch), mean over activation layers")
def _dead(run, epoch, claim, arg, results):
    return _mean(_layers(run, epoch, "dead"))


@CLAIM_METRICS.register("saturation", fraction=True,
                        label="fraction of activation inputs where the activation is flat (derivative at most 5% of "
                              "its peak), mean over layers")
def _flat(run, epoch, claim, arg, results):
    return _mean(_layers(run, epoch, "flat"))


@CLAIM_METRICS.register("saturated_fraction", fraction=True,
                        label="first saturation measure: sigmoid/tanh outputs beyond fixed bounds, 0 for every other "
                              "activation (it cannot fail for those; kept to show claims first defined with it)")
def _saturated(run, epoch, claim, arg, results):
    return _mean(_layers(run, epoch, "saturated"))


@CLAIM_METRICS.register("symmetry_index", label="symmetry index of the hidden layers (1: every unit a copy)")
def _symmetry(run, epoch, claim, arg, results):
    return _mean(_layers(run, epoch, "symmetry")[:-1])  # the output layer's units are the classes: meant to differ


@CLAIM_METRICS.register("first_layer_grad_norm", label="weight-gradient norm of the first layer (after backpropagating "
                                                      "through all the others)")
def _first_grad(run, epoch, claim, arg, results):
    norms = _layers(run, epoch, "grad_norm")
    return norms[0] if norms else math.nan


@CLAIM_METRICS.register("grad_norm_ratio", label="weight-gradient norm, first layer / last layer (blind to a common "
                                                 "weight scale in a bias-free ReLU MLP: see backward_signal_slope)")
def _grad_ratio(run, epoch, claim, arg, results):
    norms = _layers(run, epoch, "grad_norm")
    return norms[0] / norms[-1] if len(norms) >= 2 and norms[-1] > 0 else math.nan


@CLAIM_METRICS.register("backward_signal_slope",
                        label="change in ln(backward signal) per layer toward the input (< 0: it shrinks, vanishing; "
                              "> 0: it grows, exploding); a layer's backward signal is its weight-gradient norm over "
                              "the rms of its input, so the forward signal's scale cancels")
def _backward_slope(run, epoch, claim, arg, results):
    """A depth measure that sees a common weight scale, where `grad_norm_ratio` cannot: in a bias-free ReLU MLP
    with every weight scaled by s, each weight gradient scales as s^(L-1), the same for every layer, while the
    gradient reaching layer l's output scales as s^(L-l). Dividing a layer's weight-gradient norm by the rms of
    its input (the previous activation layer's output) takes the forward part out. Read for networks whose weight
    layers each follow one activation layer (an MLP): the first weight layer's input is not probed, so it is left
    out; nan where the layers do not pair up that way."""
    grads = _layers(run, epoch, "grad_norm")
    rms = [math.hypot(s, m) for s, m in zip(_layers(run, epoch, "act_std"), _layers(run, epoch, "act_mean"))]
    if len(grads) < 3 or len(rms) != len(grads) - 1:
        return math.nan
    signal = [g / r if r > 0 else math.nan for g, r in zip(grads[1:], rms)]
    if not all(math.isfinite(x) and x > 0 for x in signal):
        return math.nan
    return math.log(signal[0] / signal[-1]) / (len(signal) - 1)


@CLAIM_METRICS.register("act_var_log_ratio", label="ln(activation variance of the last activation layer / of the "
                                                   "first): 0 when the variance is equal")
def _var_log_ratio(run, epoch, claim, arg, results):
    stds = _layers(run, epoch, "act_std")
    return 2 * math.log(stds[-1] / stds[0]) if len(stds) >= 2 and stds[0] > 0 and stds[-1] > 0 else math.nan


@CLAIM_METRICS.register("act_var_imbalance", label="|ln(activation variance, last activation layer / first)|: how "
                                                   "far from equal variance, either way")
def _var_imbalance(run, epoch, claim, arg, results):
    return abs(_var_log_ratio(run, epoch, claim, arg, results))


@CLAIM_METRICS.register("act_std_ratio", label="activation std, last activation layer / first (the first measure "
                                               "of equal variance; a ratio of standard deviations)")
def _act_ratio(run, epoch, claim, arg, results):
    stds = _layers(run, epoch, "act_std")
    return stds[-1] / stds[0] if len(stds) >= 2 and stds[0] > 0 else math.nan


@CLAIM_METRICS.register("misclass_grad_ratio", report_epochs=True,
                        label="norm of the loss gradient w.r.t. the outputs, misclassified / correctly classified "
                              "test images (a ratio: any constant scale of the loss cancels)")
def _misclass_grad(run, epoch, claim, arg, results):
    return _probe(run, epoch, "misclass_grad_ratio")


@CLAIM_METRICS.register("misclass_loss_ratio", report_epochs=True,
                        label="mean loss, misclassified / correctly classified test images (a ratio: any constant "
                              "scale of the loss cancels)")
def _misclass_loss(run, epoch, claim, arg, results):
    return _probe(run, epoch, "misclass_loss_ratio")


@CLAIM_METRICS.register("shift_accuracy_drop", report_epochs=True, fraction=True, arg="2", resolution="shift_images",
                        label="test accuracy lost when images shift by k pixels")
def _shift_drop(run, epoch, claim, arg, results):
    return _probe(run, epoch, "shift_acc@0") - _probe(run, epoch, f"shift_acc@{arg}")


@CLAIM_METRICS.register("shift_agreement", report_epochs=True, fraction=True, arg="2", resolution="shift_images",
                        label="agreement with unshifted predictions, images shifted by k pixels")
def _shift_agree(run, epoch, claim, arg, results):
    return _probe(run, epoch, f"shift_agree@{arg}")


@CLAIM_METRICS.register("confident_errors", report_epochs=True, fraction=True, resolution="shift_images",
                        label="test images wrong with softmax probability >= 0.9")
def _confident(run, epoch, claim, arg, results):
    return _probe(run, epoch, "confident_errors")


@CLAIM_METRICS.register("step_ms", label="milliseconds per training step (mean over epochs; shared by a stack's runs)")
def _step(run, epoch, claim, arg, results):
    return _mean([p["step_ms"] for p in run.probes.values() if "step_ms" in p])


# ---------------------------------------------------------------- exact facts of the architecture


def _cost(name: str):
    def value(run, epoch, claim, arg, results):
        fallback = float(run.n_params) if name == "params" and run.n_params else math.nan
        return run.probes.get(0, {}).get(name, fallback)
    return value


for _name, _label in (("params", "trainable parameters"), ("flops_per_image", "forward FLOPs per image"),
                      ("feature_area", "area (height x width) of the last feature map before the classifier"),
                      ("feature_depth", "depth (channels) of the last feature map before the classifier")):
    CLAIM_METRICS.register(_name, _cost(_name), label=_label, exact=True)


# ---------------------------------------------------------------- per-class behaviour, from the kept predictions


def _confusion(run, epoch: int, results) -> np.ndarray | None:
    """The run's confusion matrix at `epoch` (None without kept predictions), computed once per results."""
    key = (id(run), epoch)  # the run itself is kept beside its matrix, so its id cannot be reused meanwhile
    if key not in results.confusions:
        preds = run.predictions.get(epoch)
        results.confusions[key] = (run, None if preds is None or len(results.y_true) != len(preds) else
                                   confusion(results.y_true, preds, len(results.classes)))
    return results.confusions[key][1]


def _class_index(results, name: str) -> int:
    if name not in results.classes:
        raise ClaimMetricError(f"class {name!r} is not one of the study's classes ({', '.join(results.classes)})")
    return results.classes.index(name)


def _pair(results, text: str) -> tuple[int, int]:
    names = text.split("/")
    if len(names) != 2 or names[0] == names[1]:
        raise ClaimMetricError(f"{text!r} is not a pair of classes; write it as first/second, e.g. cat/dog")
    return _class_index(results, names[0]), _class_index(results, names[1])


def _pair_errors(cm: np.ndarray, i: int, j: int) -> float:
    return float(cm[i, j] + cm[j, i])


@CLAIM_METRICS.register("class_recall", report_epochs=True, fraction=True, arg="cat", resolution="class_images",
                        label="recall of one class (its test images classified as it)")
def _recall(run, epoch, claim, arg, results):
    i = _class_index(results, arg)
    cm = _confusion(run, epoch, results)
    return float(cm[i, i] / cm[i].sum()) if cm is not None and cm[i].sum() else math.nan


@CLAIM_METRICS.register("class_recall_vs_mean", report_epochs=True, fraction=True, arg="deer",
                        resolution="class_images",
                        label="recall of one class minus the mean recall over all classes")
def _recall_vs_mean(run, epoch, claim, arg, results):
    i = _class_index(results, arg)
    cm = _confusion(run, epoch, results)
    if cm is None:
        return math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.diag(cm) / cm.sum(1)
    return float(recalls[i] - np.nanmean(recalls))


@CLAIM_METRICS.register("pair_error_rate", report_epochs=True, fraction=True, arg="cat/dog", resolution="test_images",
                        label="share of the test images confused between two classes (either way)")
def _pair_rate(run, epoch, claim, arg, results):
    i, j = _pair(results, arg)
    cm = _confusion(run, epoch, results)
    return _pair_errors(cm, i, j) / cm.sum() if cm is not None and cm.sum() else math.nan


@CLAIM_METRICS.register("pair_error_share", report_epochs=True, fraction=True, arg="horse/deer",
                        resolution="test_images",
                        label="share of the test errors that are confusions between two classes (either way): a "
                              "more accurate model does not lower it by making fewer errors overall")
def _pair_share(run, epoch, claim, arg, results):
    i, j = _pair(results, arg)
    cm = _confusion(run, epoch, results)
    errors = cm.sum() - np.trace(cm) if cm is not None else 0
    return _pair_errors(cm, i, j) / errors if errors else math.nan


@CLAIM_METRICS.register("pair_confusion_lead", report_epochs=True, fraction=True, arg="cat/dog",
                        resolution="test_images",
                        label="share of the test errors between two classes (either way) minus the largest such "
                              "share of any other pair (> 0: the most confused pair); '@a/b@c/d/e' compares with "
                              "the pairs among classes c, d, e only")
def _pair_lead(run, epoch, claim, arg, results):
    pair_text, _, among_text = arg.partition("@")
    i, j = _pair(results, pair_text)
    among = [_class_index(results, c) for c in among_text.split("/")] if among_text else range(len(results.classes))
    cm = _confusion(run, epoch, results)
    if cm is None:
        return math.nan
    errors = cm.sum() - np.trace(cm)
    if errors == 0:
        return math.nan
    others = [_pair_errors(cm, a, b) for a in among for b in among if a < b and {a, b} != {i, j}]
    return (_pair_errors(cm, i, j) - max(others, default=0.0)) / errors


def _pair_shares(cm: np.ndarray) -> np.ndarray:
    """Each unordered pair's confusions (either way) as a share of the errors: the confusion structure."""
    both = cm + cm.T
    pairs = both[np.triu_indices(len(cm), k=1)].astype(float)
    return pairs / pairs.sum() if pairs.sum() else np.full(pairs.shape, np.nan)


@CLAIM_METRICS.register("confusions_kept", report_epochs=True, arg="A",
                        label="how much of another variant's confusion structure this run keeps: the rank "
                              "correlation (Spearman) of the class pairs' shares of the errors, this run against "
                              "that variant's runs pooled (1: the same order of confused pairs, 0: unrelated)")
def _confusions_kept(run, epoch, claim, arg, results):
    """The whole structure, not one pair: a model that keeps cat/dog first but reorders every other confusion
    scores low, one that errs less with the same mix scores high (a share of its own errors does not fall
    because it errs less). The other variant's runs are pooled over its seeds: its structure, not one seed's."""
    if arg not in results.variants:
        raise ClaimMetricError(f"{arg!r} is not one of the study's variants ({', '.join(results.variants)})")
    cm = _confusion(run, epoch, results)
    theirs = [m for m in (_confusion(r, epoch, results) for r in results.runs_of(arg) if r.status == "done")
              if m is not None]
    if cm is None or not theirs:
        return math.nan
    ours, reference = _pair_shares(cm), _pair_shares(sum(theirs))
    if not (np.isfinite(ours).all() and np.isfinite(reference).all()) or np.ptp(ours) == 0 or np.ptp(reference) == 0:
        return math.nan  # no errors, or all pairs alike: no order to keep
    return float(spearmanr(ours, reference)[0])


__all__ = ["ClaimMetricError"]
