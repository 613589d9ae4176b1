"""Pluggable pieces: activation, normalisation, pooling and initialisation by name."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    return {
        "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "elu": nn.ELU,
        "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity,
    }[name]()


class MinPool2d(nn.Module):
    """Min pooling: the max of the negated input, negated back."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -F.max_pool2d(-x, self.kernel_size)


def pool(name: str, size: int) -> nn.Module:
    if name == "none" or size == 1:
        return nn.Identity()
    return {
        "max": lambda: nn.MaxPool2d(size),
        "avg": lambda: nn.AvgPool2d(size),
        "min": lambda: MinPool2d(size),
        "l2": lambda: nn.LPPool2d(2, size),
    }[name]()


def initialise(model: nn.Module, scheme: str, value: float = 0.05) -> None:
    """Re-initialise every conv and linear layer; "default" keeps PyTorch's init.

    zeros and constant are here on purpose: they show the symmetry problem
    (every unit of a layer gets the same gradient and stays identical).
    """
    if scheme == "default":
        return
    for m in model.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight
        if scheme == "xavier":
            nn.init.xavier_uniform_(w)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(w, nonlinearity="relu")
        elif scheme == "zeros":
            nn.init.zeros_(w)
        elif scheme == "constant":
            nn.init.constant_(w, value)
        elif scheme == "normal":
            nn.init.normal_(w, 0.0, value)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
