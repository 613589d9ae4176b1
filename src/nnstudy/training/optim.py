"""Optimisers and learning-rate schedules, registered by name.

An optimiser acts element-wise (SGD, momentum, Adam, weight decay), so one
optimiser over the stacked [K, ...] parameters updates each seed as if alone.
"""

from __future__ import annotations

import math

import torch

from nnstudy.registry import OPTIMIZERS, SCHEDULES


def _fast(make):
    # The fused kernels are the fastest path on CPU and CUDA; older torch lacks them on CPU.
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):
        return make(foreach=True)


@OPTIMIZERS.register("sgd")
def _sgd(params, t):
    return _fast(lambda **kw: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                                              weight_decay=t.weight_decay, **kw))


@OPTIMIZERS.register("adam")
def _adam(params, t):
    return _fast(lambda **kw: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **kw))


@OPTIMIZERS.register("adamw")
def _adamw(params, t):
    return _fast(lambda **kw: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **kw))


def make_optimizer(t, params) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(t.optimizer)(params, t)


# Schedules: (train config, epoch after warm-up, epochs after warm-up) -> learning-rate factor.
SCHEDULES.register("constant", lambda t, e, span: 1.0)
SCHEDULES.register("step", lambda t, e, span: t.gamma ** (e // t.step_size))
SCHEDULES.register("cosine", lambda t, e, span: 0.5 * (1 + math.cos(math.pi * e / span)))
SCHEDULES.register("linear", lambda t, e, span: 1 - e / span)


def lr_factor(t, epoch: int) -> float:
    """Learning-rate multiplier for a 0-based epoch (set once per epoch): linear warm-up, then the schedule."""
    if t.warmup_epochs and epoch < t.warmup_epochs:
        return (epoch + 1) / (t.warmup_epochs + 1)
    e, span = epoch - t.warmup_epochs, max(1, t.epochs - t.warmup_epochs)
    return SCHEDULES.get(t.schedule)(t, e, span)
