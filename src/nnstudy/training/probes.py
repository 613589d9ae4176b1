"""Mechanism probes: what happens inside each seed's network, at initialisation and after each epoch.

Measured on a fixed probe batch (the same training images for every run of a
study) with a plain copy of one seed's network, so they work the same whether
the seeds train stacked or alone, and for any user's model:

- per activation layer: mean and std of its output, the fraction of its units
  that are dead (never active on the probe batch) and, for saturating
  activations (sigmoid, tanh), the fraction of outputs in saturation;
- per weight layer (Conv2d, Linear): the norm of the loss gradient with
  respect to its weight, the weight norm, and a symmetry index (mean absolute
  cosine similarity between its units' incoming weight vectors: 1 means every
  unit is a copy of the others);
- on the report epochs: test accuracy on a fixed test subset shifted by 0, 1,
  2 and 4 pixels, agreement with the unshifted predictions, and the fraction
  of confident mistakes (wrong with softmax probability >= 0.9);
- once: parameters and FLOPs per image (torch.utils.flop_counter).
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
_SATURATED = {"sigmoid": (0.02, 0.98), "tanh": (-0.98, 0.98)}  # outputs beyond these bounds are saturated


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
        self._cost: dict[str, float] | None = None
        modules = dict(self.model.named_modules())
        for name, _ in self.activations:
            modules[name].register_forward_hook(lambda mod, inp, out, name=name: self._outputs.__setitem__(name, out.detach()))

    def cost(self) -> dict[str, float]:
        """Parameters and forward FLOPs per image (counted by torch's FLOP counter), counted once."""
        if self._cost is None:
            self._cost = self._count()
        return self._cost

    def _count(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.model(self.x[:1])
        return {"params": float(sum(p.numel() for p in self.model.parameters())),
                "flops_per_image": float(counter.get_total_flops())}

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
        out: dict[str, float] = self._shift_probes() if shifts else {}
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        self._outputs.clear()
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
        modules = dict(self.model.named_modules())
        for name in self.weights:
            w = modules[name].weight
            out[f"grad_norm|{name}"] = float(w.grad.norm()) if w.grad is not None else 0.0
            out[f"weight_norm|{name}"] = float(w.detach().norm())
            out[f"symmetry|{name}"] = symmetry_index(w.detach())
        return out

    @torch.no_grad()
    def _shift_probes(self) -> dict[str, float]:
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
