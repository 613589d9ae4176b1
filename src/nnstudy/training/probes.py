"""Mechanism probes: what happens inside each seed's network, at initialisation and after each epoch.

Measured on a fixed probe batch (the same training images for every run of a
study) with a plain copy of one seed's network, so they work the same whether
the seeds train stacked or alone, and for any user's model:

- per activation layer: mean and std of its output, the fraction of its units
  that are dead (never active on the probe batch), and the fraction of its
  inputs where the activation is flat: its local derivative at most 5% of the
  activation's largest (one rule for every activation, so ReLU's zero side
  counts as flat as much as sigmoid's tails do). The first saturation probe
  (sigmoid/tanh outputs beyond fixed bounds, 0 for every other activation) is
  still recorded, so claims first defined with it can show their verdict;
- per weight layer (Conv2d, Linear): the norm of the loss gradient with
  respect to its weight, the weight norm, and a symmetry index (mean absolute
  cosine similarity between its units' incoming weight vectors: 1 means every
  unit is a copy of the others);
- on the report epochs: test accuracy on a fixed test subset shifted by 0, 1,
  2 and 4 pixels, agreement with the unshifted predictions, the fraction
  of confident mistakes (wrong with softmax probability >= 0.9), and how hard
  the loss pushes on the misclassified images against the correct ones (mean
  per-image loss, and norm of its gradient with respect to the outputs,
  misclassified / correct): a ratio, so the same whatever constant scales
  the loss (MSE as a mean or a sum over the classes);
- once: parameters, FLOPs per image (torch.utils.flop_counter), and the
  depth (channels) and area (height x width) of the last feature map before
  the classifier (convolutional networks).

Each probe is one entry of `registry.PROBES`, whose `per` says what it takes:
- "activation": `fn(layer, inputs, outputs, kind) -> float` per activation layer, stored as "name|layer";
- "weight": `fn(layer) -> float` per Conv2d/Linear (its weight, with the probe batch's loss gradient on it);
- "report epoch": `fn(prober, loss_fn) -> {key: float}` on the report epochs (the fixed test subset);
- "run": `fn(prober) -> {key: float}` once, at initialisation.
`label` says what it is in words; `figure` (optional) how the report draws it: "depth" (per layer, input to
output), "epochs" (mean over layers, per epoch) or "shift", with its file name, axis label and title.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F

from nnstudy.history import probe_key
from nnstudy.registry import ACTIVATIONS, PROBES
from nnstudy.training.work_count import WorkCounter

PROBE_IMAGES = 256
SHIFT_TEST_IMAGES = 1000
SHIFTS = (0, 1, 2, 4)
PROBE_SEED = 0  # the probe batch is part of the design: the same images for every run
_SATURATED = {"sigmoid": (0.02, 0.98), "tanh": (-0.98, 0.98)}  # the first saturation probe's bounds (kept)
FLAT = 0.05  # an input is "flat" where the local derivative is at most this share of the activation's largest


def _activation_kinds() -> dict[type, str]:
    return {ACTIVATIONS.entry(n).meta["module"]: n for n in ACTIVATIONS.names() if "module" in ACTIVATIONS.entry(n).meta}


class Prober:
    """Probes one network architecture; `measure(state)` takes one seed's weights."""

    def __init__(self, module: nn.Module, data, pipeline, loss_fn, device: torch.device):
        # Storage only: a stacked stack's module lives on the meta device; `measure` loads the weights.
        self.model = copy.deepcopy(module).to_empty(device=device)
        self.loss_fn, self.pipeline = loss_fn, pipeline
        n = data.train_x.shape[0]
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(PROBE_SEED))[:PROBE_IMAGES]
        self.x = pipeline.normalise(data.train_x[idx].to(device))
        self.y = data.train_y[idx].to(device)
        m = data.test_x.shape[0]
        tidx = torch.randperm(m, generator=torch.Generator().manual_seed(PROBE_SEED))[:SHIFT_TEST_IMAGES].sort().values
        self.test_x, self.test_y = data.test_x[tidx].to(device), data.test_y[tidx].to(device)
        kinds = _activation_kinds()
        self.activations = [(name, kinds[type(m)]) for name, m in self.model.named_modules() if type(m) in kinds
                            and kinds[type(m)] != "identity"]
        self.weights = [name for name, m in self.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self._outputs: dict[str, torch.Tensor] = {}
        self._inputs: dict[str, torch.Tensor] = {}
        self._cost: dict[str, float] | None = None
        self._test_logits: dict[int, torch.Tensor] = {}
        modules = dict(self.model.named_modules())
        for name, _ in self.activations:
            # The input is copied before the call: an in-place activation overwrites it.
            modules[name].register_forward_pre_hook(
                lambda mod, inp, name=name: self._inputs.__setitem__(name, inp[0].detach().clone()))
            modules[name].register_forward_hook(lambda mod, inp, out, name=name: self._outputs.__setitem__(name, out.detach()))

    def cost(self) -> dict[str, float]:
        """The per-run probes (parameters, forward FLOPs per image, ...), measured once."""
        if self._cost is None:
            self._cost = {k: v for name in _probes("run") for k, v in PROBES.get(name)(self).items()}
        return self._cost

    def count(self) -> dict[str, float]:
        """Parameters and forward FLOPs per image (torch's FLOP formulas), and the last feature map's shape."""
        self.model.eval()
        maps: list[torch.Size] = []  # 4-D outputs, in call order, until the first Linear runs
        hooks = [m.register_forward_hook(lambda mod, inp, out: maps.append(out.shape)
                                         if torch.is_tensor(out) and out.dim() == 4 else None)
                 for m in self.model.modules() if not list(m.children())]
        first_linear = next((m for m in self.model.modules() if isinstance(m, nn.Linear)), None)
        stop = []
        if first_linear is not None:
            hooks.append(first_linear.register_forward_pre_hook(lambda mod, inp: stop.append(len(maps))))
        try:
            with torch.no_grad(), WorkCounter() as counter:
                self.model(self.x[:1])
        finally:
            for h in hooks:
                h.remove()
        out = {"params": float(sum(p.numel() for p in self.model.parameters())),
               "flops_per_image": float(counter.total_flops)}
        maps = maps[:stop[0]] if stop else maps
        if maps:
            out["feature_depth"], out["feature_area"] = float(maps[-1][1]), float(maps[-1][2] * maps[-1][3])
        return out

    def measure(self, state: dict[str, torch.Tensor], shifts: bool, loss_fn=None) -> dict[str, float]:
        """One seed's probes, flat: "probe" for the whole network, "probe|layer" per layer.

        `loss_fn`: the seed's own loss, where stacked seeds differ in it (default: the prober's).
        """
        devices = [self.x.device] if self.x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout in the probe pass must not move training's RNG
            return self._measure(state, shifts, loss_fn or self.loss_fn)

    def _measure(self, state: dict[str, torch.Tensor], shifts: bool, loss_fn) -> dict[str, float]:
        self.model.load_state_dict(state)
        # Report-epoch probes first, in eval mode: the train-mode pass below moves the copy's BatchNorm statistics.
        out: dict[str, float] = {}
        if shifts:
            self.model.eval()
            self._test_logits = {}
            for name in _probes("report epoch"):
                out.update(PROBES.get(name)(self, loss_fn))
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        modules = dict(self.model.named_modules())
        self._outputs.clear()
        self._inputs.clear()
        logits = self.model(self.x)
        loss_fn(logits.float(), self.y).mean().backward()
        for layer, kind in self.activations:
            for name in _probes("activation"):
                out[probe_key(name, layer)] = PROBES.get(name)(modules[layer], self._inputs[layer],
                                                               self._outputs[layer], kind)
        for layer in self.weights:
            for name in _probes("weight"):
                out[probe_key(name, layer)] = PROBES.get(name)(modules[layer])
        return out

    @torch.no_grad()
    def test_logits(self, pixels: int = 0) -> torch.Tensor:
        """The network's outputs on the fixed test subset moved by `pixels` (eval mode; kept for the measure)."""
        if pixels not in self._test_logits:
            self._test_logits[pixels] = self.model(self.pipeline.normalise(shift_images(self.test_x, pixels))).float()
        return self._test_logits[pixels]


def _probes(per: str) -> list[str]:
    return [n for n in PROBES.names() if PROBES.entry(n).meta["per"] == per]


# --- the probes ------------------------------------------------------------------------------------------------
PROBES.register("act_mean", lambda layer, z, a, kind: float(a.float().mean()), per="activation",
                label="mean of the activation layer's output")
PROBES.register("act_std", lambda layer, z, a, kind: float(a.float().std()), per="activation",
                label="standard deviation of the activation layer's output",
                figure={"kind": "depth", "file": "act-std-depth.png", "axis": "activation std",
                        "title": "Standard deviation of each activation layer's output: flat means the signal keeps "
                                 "its scale"})


@PROBES.register("dead", per="activation", label="fraction of the layer's units never active on the probe batch",
                 figure={"kind": "epochs", "file": "dead-units.png", "axis": "dead units (fraction)",
                         "title": "Fraction of dead units (never active on the probe batch), mean over activation "
                                  "layers"})
def _dead(layer, z, a, kind) -> float:
    units = a.float().transpose(0, 1).reshape(a.shape[1], -1)  # [units (channels or features), samples x positions]
    return float(((units > 0).sum(1) == 0).double().mean())


@PROBES.register("saturated", per="activation", label="sigmoid/tanh outputs beyond fixed bounds (the first "
                                                       "saturation probe; 0 for every other activation)")
def _saturated(layer, z, a, kind) -> float:
    low, high = _SATURATED.get(kind, (None, None))
    return float(((a.float() < low) | (a.float() > high)).double().mean()) if low is not None else 0.0


PROBES.register("flat", lambda layer, z, a, kind: flat_fraction(layer, z), per="activation",
                label="fraction of the layer's inputs where the activation is flat")
PROBES.register("grad_norm", lambda layer: float(layer.weight.grad.norm()) if layer.weight.grad is not None else 0.0,
                per="weight", label="norm of the loss gradient with respect to the layer's weight",
                figure={"kind": "depth", "file": "grad-norm-depth.png", "axis": "weight-gradient norm",
                        "title": "Norm of the loss gradient per weight layer, input to output: a slope is vanishing "
                                 "or exploding gradients"})
PROBES.register("weight_norm", lambda layer: float(layer.weight.detach().norm()), per="weight",
                label="norm of the layer's weight")
PROBES.register("symmetry", lambda layer: symmetry_index(layer.weight.detach()), per="weight",
                label="mean |cosine similarity| of the units' incoming weights (1: every unit a copy)")


@PROBES.register("shift", per="report epoch", label="test accuracy on a fixed test subset moved by k pixels "
                                                    "(shift_acc@k), and agreement with the unmoved predictions "
                                                    "(shift_agree@k)",
                 figure={"kind": "shift", "file": "shift.png", "axis": "test accuracy (%)",
                         "title": "Test accuracy on shifted test images (a fixed subset)"})
def _shift(prober: Prober, loss_fn) -> dict[str, float]:
    out, base = {}, prober.test_logits(0).argmax(1)
    for s in SHIFTS:
        preds = prober.test_logits(s).argmax(1)
        out[f"shift_acc@{s}"] = float((preds == prober.test_y).double().mean())
        out[f"shift_agree@{s}"] = float((preds == base).double().mean())
    return out


@PROBES.register("confident_errors", per="report epoch", label="test images wrong with softmax probability >= 0.9")
def _confident(prober: Prober, loss_fn) -> dict[str, float]:
    logits = prober.test_logits(0)
    wrong = logits.argmax(1) != prober.test_y
    return {"confident_errors": float((wrong & (F.softmax(logits, 1).amax(1) >= 0.9)).double().mean())}


PROBES.register("punishment", lambda prober, loss_fn: punishment(prober.test_logits(0), prober.test_y, loss_fn),
                per="report epoch", label="mean loss and loss-gradient norm on misclassified test images over "
                                          "correct ones (misclass_loss_ratio, misclass_grad_ratio)")


@PROBES.register("cost", per="run", label="parameters, forward FLOPs per image (torch's FLOP formulas), and the depth "
                                          "and area of the last feature map before the classifier")
def _cost(prober: Prober) -> dict[str, float]:
    return prober.count()


def derivative(activation: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The local derivative of an elementwise activation at every entry of `z`."""
    with torch.enable_grad():
        z = z.detach().float().clone().requires_grad_(True)
        # forward(), not __call__: the probe's hooks must not record this pass
        (grad,) = torch.autograd.grad(activation.forward(z.clone()).sum(), z)
    return grad


def flat_fraction(activation: nn.Module, z: torch.Tensor) -> float:
    """Share of the inputs `z` where the activation's |derivative| is at most FLAT x its peak: there it passes
    (almost) no gradient back, whether it is sigmoid in its tails or ReLU below zero.

    The peak is the function's own (largest |derivative| for inputs from -20 to 20), not the data's.
    """
    peak = float(derivative(activation, torch.linspace(-20, 20, 8001, device=z.device)).abs().max())
    if not peak > 0:
        return float("nan")
    return float((derivative(activation, z).abs() <= FLAT * peak).double().mean())


def punishment(logits: torch.Tensor, y: torch.Tensor, loss_fn) -> dict[str, float]:
    """Mean loss and mean norm of d(loss)/d(outputs) on misclassified images, each over the same on correct ones.

    Ratios, so a constant factor in the loss cancels; nan when either group is empty or the correct
    images' mean is zero (a margin loss met by every correct image).
    """
    with torch.enable_grad():
        z = logits.detach().float().requires_grad_(True)
        losses = loss_fn(z, y)
        (grad,) = torch.autograd.grad(losses.sum(), z)  # row i: d loss_i / d outputs_i
    losses, norms = losses.detach().double(), grad.norm(dim=1).double()
    wrong = logits.argmax(1) != y
    out = {}
    for name, values in (("misclass_loss_ratio", losses), ("misclass_grad_ratio", norms)):
        right_mean = values[~wrong].mean() if (~wrong).any() else torch.tensor(float("nan"))
        ok = wrong.any() and bool(right_mean > 0)
        out[name] = float(values[wrong].mean() / right_mean) if ok else float("nan")
    return out


def symmetry_index(weight: torch.Tensor) -> float:
    """Mean |cosine similarity| between the rows (units' incoming weights) of a layer: 1 = all units are copies.

    Two all-zero rows count as copies (cosine 1), a zero row against a non-zero one as 0.
    """
    rows = weight.reshape(weight.shape[0], -1).double()
    if rows.shape[0] < 2:
        return float("nan")
    norms = rows.norm(dim=1)
    unit = rows / norms.clamp_min(1e-300).unsqueeze(1)
    cos = (unit @ unit.T).abs()
    zero = norms == 0
    cos[zero.unsqueeze(1) & zero.unsqueeze(0)] = 1.0
    off = ~torch.eye(rows.shape[0], dtype=torch.bool)
    return float(cos[off].mean())


def shift_images(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move images right and down by `pixels`, filling the uncovered border with zeros."""
    if pixels == 0:
        return x
    out = torch.zeros_like(x)
    out[..., pixels:, pixels:] = x[..., :-pixels, :-pixels]
    return out
