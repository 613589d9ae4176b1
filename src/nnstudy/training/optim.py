"""Optimisers and learning-rate schedules, registered by name.

An optimiser acts element-wise (SGD, momentum, Adam, weight decay), so one
optimiser over the stacked [K, ...] parameters updates each seed as if alone.
Stack members whose hyperparameters differ (variants stacked together that
differ in learning rate, momentum, weight decay or schedule) get one optimiser
per run of equal members, each over its slice of the stack: the same kernels
with each member's own values (`MemberOptimizer`).
"""

from __future__ import annotations

import math

import torch

from nnstudy.registry import OPTIMIZERS, SCHEDULES
from nnstudy.training.stacking import member_runs, optimizer_key


def _fast(optimizer, params, **settings):
    """`optimizer` over `params` with the fused kernels on CUDA, where they are fastest; the foreach kernels on CPU.

    On CPU the fused kernels update a tensor's last (size mod vector width) values on a scalar path that rounds
    differently, and in a stack those values are the last member's: a run's numbers would depend on where it
    stands in its stack, so on the plan. The foreach kernels round every value alike (epochs 3-9% longer, most
    at batch 4; bench/README.md, session 17).
    """
    params = list(params)
    if params and all(p.is_cuda for p in params):
        try:
            return optimizer(params, fused=True, **settings)
        except (RuntimeError, TypeError, ValueError):  # a torch without them
            pass
    return optimizer(params, foreach=True, **settings)


@OPTIMIZERS.register("sgd")
def _sgd(params, t):
    return _fast(torch.optim.SGD, params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                 weight_decay=t.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, t):
    return _fast(torch.optim.Adam, params, lr=t.lr, weight_decay=t.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, t):
    return _fast(torch.optim.AdamW, params, lr=t.lr, weight_decay=t.weight_decay)


def make_optimizer(t, params, members=None):
    """One optimiser over the stacked parameters; a `MemberOptimizer` when the members' settings differ.

    `members`: each stack member's TrainConfig (None: all share `t`).
    """
    if members and len({optimizer_key(m) for m in members}) > 1:
        return MemberOptimizer(params, members)
    return OPTIMIZERS.get(t.optimizer)(params, t)


def set_lrs(optimizer, lrs: list[float]) -> None:
    """Set this epoch's learning rate of each stack member (all equal unless a MemberOptimizer)."""
    if isinstance(optimizer, MemberOptimizer):
        optimizer.set_lrs(lrs)
    else:
        for group in optimizer.param_groups:
            group["lr"] = lrs[0]


class MemberOptimizer:
    """Optimisers over slices [a:b] of the stacked [K, ...] parameters, one per run of members with equal settings.

    Each slice optimiser is the registered optimiser built from its members'
    own TrainConfig, over detached views that share the stack's storage, so it
    updates those members in place with the kernels (and numbers) they would
    get alone. `state` reads and writes per stacked parameter, in the layout of
    a plain optimiser over the whole stack (what checkpoints hold).
    """

    def __init__(self, params: list[torch.Tensor], members):
        self.params = list(params)
        self.slices = []  # (start, stop, optimiser, views)
        for start, stop in member_runs([optimizer_key(m) for m in members]):
            views = [p.detach()[start:stop] for p in self.params]
            self.slices.append((start, stop, OPTIMIZERS.get(members[start].optimizer)(views, members[start]), views))
        self.state = _MemberState(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        for _, _, _, views in self.slices:  # the views' grads are slices of the old ones: let them go too
            for v in views:
                v.grad = None

    def step(self) -> None:
        for start, stop, opt, views in self.slices:
            for p, v in zip(self.params, views):
                v.grad = None if p.grad is None else p.grad[start:stop]
            opt.step()

    def set_lrs(self, lrs: list[float]) -> None:
        for start, _, opt, _ in self.slices:
            for group in opt.param_groups:
                group["lr"] = lrs[start]


class _MemberState:
    """`optimizer.state` of a MemberOptimizer: per stacked parameter, its slices' states joined along the stack."""

    def __init__(self, owner: MemberOptimizer):
        self.owner = owner
        self.index = {id(p): i for i, p in enumerate(owner.params)}

    def get(self, p, default=None):
        i = self.index[id(p)]
        parts = [(opt.state.get(views[i], {}), views[i]) for _, _, opt, views in self.owner.slices]
        keys = {key for state, _ in parts for key, v in state.items() if torch.is_tensor(v)}
        if not keys:
            return default
        out = {}
        for key in sorted(keys):
            first = next(state[key] for state, _ in parts if torch.is_tensor(state.get(key)))
            if first.dim() == p.dim():  # per element: join the slices (zeros where a slice keeps none)
                out[key] = torch.cat([state[key] if torch.is_tensor(state.get(key)) else torch.zeros_like(view)
                                      for state, view in parts])
            else:  # shared, e.g. Adam's step count
                out[key] = first
        return out

    def __setitem__(self, p, state: dict) -> None:
        i = self.index[id(p)]
        for start, stop, opt, views in self.owner.slices:
            opt.state[views[i]] = {key: (v[start:stop].clone() if v.dim() == p.dim() else v.clone())
                                   for key, v in state.items()}


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
