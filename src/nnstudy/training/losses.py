"""Losses with a seed axis: logits [K, B, C], labels [K, B] -> one loss per seed [K].

Each seed's value equals what the matching `torch.nn` loss (reduction "mean")
gives for that seed's batch alone, so summing over seeds and back-propagating
gives every seed its own, unchanged gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_seed_loss(name: str, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    k, b, c = logits.shape
    flat_logits, flat_y = logits.reshape(k * b, c), y.reshape(k * b)
    if name == "cross_entropy":
        loss = F.cross_entropy(flat_logits, flat_y, reduction="none", label_smoothing=label_smoothing)
    elif name == "mse":
        # nn.MSELoss on the raw outputs against one-hot targets (the coursework's form).
        target = F.one_hot(flat_y, c).to(flat_logits.dtype)
        loss = (flat_logits - target).pow(2).mean(1)
    elif name == "margin":
        loss = F.multi_margin_loss(flat_logits, flat_y, reduction="none")
    else:
        raise ValueError(f"unknown loss {name!r}")
    return loss.view(k, b).mean(1)
