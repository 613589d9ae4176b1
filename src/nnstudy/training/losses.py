"""Losses with a seed axis: logits [K, B, C], labels [K, B] -> one loss per seed [K].

Each registered loss gives per-example values (reduction "none"); a seed's
value is their mean, equal to what the matching `torch.nn` loss (reduction
"mean") gives for that seed's batch alone, so summing over seeds and
back-propagating gives every seed its own, unchanged gradient.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nnstudy.errors import UserError
from nnstudy.registry import LOSSES, import_reference

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [N, C], labels [N]) -> [N]


@LOSSES.register("cross_entropy")
def _cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    return lambda logits, y: F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)


@LOSSES.register("mse")
def _mse(label_smoothing: float = 0.0) -> LossFn:
    # nn.MSELoss on the raw outputs against one-hot targets (the coursework's form).
    return lambda logits, y: (logits - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).mean(1)


@LOSSES.register("mse_softmax")
def _mse_softmax(label_smoothing: float = 0.0) -> LossFn:
    # MSE on softmax outputs: the coursework's "not very well with sigmoid/softmax outputs" case (R4.4).
    return lambda logits, y: (F.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).mean(1)


@LOSSES.register("margin")
def _margin(label_smoothing: float = 0.0) -> LossFn:
    return lambda logits, y: F.multi_margin_loss(logits, y, reduction="none")


def make_loss(t, source_dir: str | None = None) -> LossFn:
    """The per-example loss of a train config: a registered name or a "module:function" factory."""
    if t.loss in LOSSES:
        return LOSSES.get(t.loss)(t.label_smoothing)
    factory = import_reference(t.loss, "train.loss", source_dir)
    try:
        fn = factory(**t.loss_args)
    except Exception as exc:
        raise UserError(f"train.loss factory {t.loss} raised {type(exc).__name__}: {exc}") from None
    if hasattr(fn, "reduction"):  # a torch.nn loss module: per-example values, please
        fn.reduction = "none"
    if not callable(fn):
        raise UserError(f"train.loss factory {t.loss} returned {type(fn).__name__}; return a callable "
                        "(logits [N, C], labels [N]) -> per-example losses [N], e.g. nn.CrossEntropyLoss()")
    return fn


def per_seed_loss(loss: LossFn | str, logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    if isinstance(loss, str):  # a registered name (tests and benchmarks call it so)
        loss = LOSSES.get(loss)(label_smoothing)
    k, b, c = logits.shape
    return loss(logits.reshape(k * b, c), y.reshape(k * b)).view(k, b).mean(1)
