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
"""

from __future__ import annotations

import copy

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from nnstudy.registry import ACTIVATIONS

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
        modules = dict(self.model.named_modules())
        for name, _ in self.activations:
            # The input is copied before the call: an in-place activation overwrites it.
            modules[name].register_forward_pre_hook(
                lambda mod, inp, name=name: self._inputs.__setitem__(name, inp[0].detach().clone()))
            modules[name].register_forward_hook(lambda mod, inp, out, name=name: self._outputs.__setitem__(name, out.detach()))

    def cost(self) -> dict[str, float]:
        """Parameters and forward FLOPs per image (counted by torch's FLOP counter), counted once."""
        if self._cost is None:
            self._cost = self._count()
        return self._cost

    def _count(self) -> dict[str, float]:
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
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self.model(self.x[:1])
        finally:
            for h in hooks:
                h.remove()
        out = {"params": float(sum(p.numel() for p in self.model.parameters())),
               "flops_per_image": float(counter.get_total_flops())}
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
        # Shifts first, in eval mode: the train-mode pass below moves the copy's BatchNorm statistics.
        out: dict[str, float] = self._shift_probes(loss_fn) if shifts else {}
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        modules = dict(self.model.named_modules())
        self._outputs.clear()
        self._inputs.clear()
        logits = self.model(self.x)
        loss_fn(logits.float(), self.y).mean().backward()
        for name, kind in self.activations:
            a = self._outputs[name].float()
            out[f"act_mean|{name}"] = float(a.mean())
            out[f"act_std|{name}"] = float(a.std())
            units = a.transpose(0, 1).reshape(a.shape[1], -1)  # [units (channels or features), samples x positions]
            out[f"dead|{name}"] = float(((units > 0).sum(1) == 0).double().mean())
            low, high = _SATURATED.get(kind, (None, None))
            out[f"saturated|{name}"] = float(((a < low) | (a > high)).double().mean()) if low is not None else 0.0
            out[f"flat|{name}"] = flat_fraction(modules[name], self._inputs[name])
        for name in self.weights:
            w = modules[name].weight
            out[f"grad_norm|{name}"] = float(w.grad.norm()) if w.grad is not None else 0.0
            out[f"weight_norm|{name}"] = float(w.detach().norm())
            out[f"symmetry|{name}"] = symmetry_index(w.detach())
        return out

    @torch.no_grad()
    def _shift_probes(self, loss_fn) -> dict[str, float]:
        self.model.eval()
        out, base = {}, None
        for s in SHIFTS:
            logits = self.model(self.pipeline.normalise(shift_images(self.test_x, s))).float()
            preds = logits.argmax(1)
            base = preds if base is None else base
            out[f"shift_acc@{s}"] = float((preds == self.test_y).double().mean())
            out[f"shift_agree@{s}"] = float((preds == base).double().mean())
            if s == 0:
                wrong = preds != self.test_y
                out["confident_errors"] = float((wrong & (F.softmax(logits, 1).amax(1) >= 0.9)).double().mean())
                out.update(punishment(logits, self.test_y, loss_fn))
        return out


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
