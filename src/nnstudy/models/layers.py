"""Pluggable pieces, registered by name: activation, normalisation, pooling, initialisation.

`per_channel=True` tells the stacked engine (training/stacked_forward.py)
that the layer acts on each channel alone, so it runs unchanged on K seeds'
channels laid side by side. `exact=True` says that its vectorised and scalar
kernels give the same value for every input (one IEEE operation a value:
max, a product, a copy); other per-value layers (polynomial approximations of
exp or erf) run once per seed, so that no seed's values fall in another's
scalar tail and a seed's numbers do not depend on its stack.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from nnstudy.registry import ACTIVATIONS, INITS, NORMS, POOLINGS

# ---------------------------------------------------------------- activations
for _name, _cls in (("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("elu", nn.ELU),
                    ("gelu", nn.GELU), ("silu", nn.SiLU), ("identity", nn.Identity)):
    ACTIVATIONS.register(_name, lambda negative_slope, _cls=_cls: _cls(), per_channel=True, module=_cls,
                         saturating=_name in ("sigmoid", "tanh"), exact=_name in ("relu", "identity"))
ACTIVATIONS.register("leaky_relu", lambda negative_slope: nn.LeakyReLU(negative_slope), per_channel=True,
                     module=nn.LeakyReLU, saturating=False, exact=True)


def activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    return ACTIVATIONS.get(name)(negative_slope)


# ---------------------------------------------------------------- normalisation
NORMS.register("none", lambda dims, width: None)
NORMS.register("batch", lambda dims, width: nn.BatchNorm2d(width) if dims == 2 else nn.BatchNorm1d(width))


def norm(name: str, dims: int, width: int) -> nn.Module | None:
    """The normalisation layer after a conv (dims=2) or linear (dims=1) layer, or None."""
    return NORMS.get(name)(dims, width)


# ---------------------------------------------------------------- pooling
class MinPool2d(nn.Module):
    """Min pooling: the max of the negated input, negated back."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -F.max_pool2d(-x, self.kernel_size)


POOLINGS.register("max", nn.MaxPool2d, per_channel=True, module=nn.MaxPool2d, exact=True)
POOLINGS.register("avg", nn.AvgPool2d, per_channel=True, module=nn.AvgPool2d, exact=True)
POOLINGS.register("min", MinPool2d, per_channel=True, module=MinPool2d, exact=True)
POOLINGS.register("l2", lambda size: nn.LPPool2d(2, size), per_channel=True, module=nn.LPPool2d, exact=True)
POOLINGS.register("none", lambda size: nn.Identity(), per_channel=True, module=nn.Identity, exact=True)


def pool(name: str, size: int) -> nn.Module:
    if name == "none" or size == 1:
        return nn.Identity()
    return POOLINGS.get(name)(size)


# ---------------------------------------------------------------- initialisation
# zeros and constant are here on purpose: they show the symmetry problem
# (every unit of a layer gets the same gradient and stays identical). Every scheme zeroes the biases except
# where its entry says `random_bias=True`: there the layer keeps the biases PyTorch drew for it (uniform within
# +-1/sqrt(fan_in), from the seeded RNG), so constant weights with random biases ask whether the data can break
# the symmetry that zeroed biases fix by construction.
INITS.register("default", None)
INITS.register("xavier", lambda w, value: nn.init.xavier_uniform_(w))
INITS.register("kaiming", lambda w, value: nn.init.kaiming_normal_(w, nonlinearity="relu"))
INITS.register("zeros", lambda w, value: nn.init.zeros_(w))
INITS.register("constant", lambda w, value: nn.init.constant_(w, value))
INITS.register("constant_random_bias", lambda w, value: nn.init.constant_(w, value), random_bias=True)
INITS.register("normal", lambda w, value: nn.init.normal_(w, 0.0, value))


def initialise(model: nn.Module, scheme: str, value: float = 0.05) -> list[str]:
    """Re-initialise every conv and linear layer; "default" keeps the model's own init.

    Returns the names of the layers it touched (the report says which).
    """
    fill = INITS.get(scheme)
    if fill is None:
        return []
    keep_bias = bool(INITS.entry(scheme).meta.get("random_bias"))
    touched = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        fill(m.weight, value)
        if m.bias is not None and not keep_bias:
            nn.init.zeros_(m.bias)
        touched.append(name)
    return touched


def per_channel_modules(exact_only: bool = False) -> tuple[type, ...]:
    """Layer types the stacked engine may apply to all seeds' channels laid side by side; `exact_only`: those whose
    kernels give the same value for an input wherever it lies in the tensor (the others run once per seed)."""
    return tuple({e.meta["module"] for r in (ACTIVATIONS, POOLINGS) for e in (r.entry(n) for n in r.names())
                  if e.meta.get("per_channel") and (e.meta.get("exact") or not exact_only)})
