"""Checks that need the data, run for every variant before any training starts.

A study that would fail in its third variant after an hour fails now, in one
line naming the variant: mean/std against the image channels, a conv stack
that shrinks the images to nothing, a user's model or loss that breaks on one
batch, a model whose output is not one logit per class. It also finds out
whether the seeds of a variant can train stacked.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import torch
from torch.func import functional_call, stack_module_state, vmap

from nnstudy.config.schema import RunConfig
from nnstudy.data.augment import BatchPipeline
from nnstudy.errors import UserError, first_line
from nnstudy.models import build_model
from nnstudy.training import stacked_forward
from nnstudy.training.losses import make_loss, per_seed_loss
from nnstudy.training.stacking import can_stack
from nnstudy.training.trainer import normalisation
from nnstudy.training.work_count import WorkCounter


@dataclass
class Preflight:
    stackable: bool
    why_not: str | None = None  # why the seeds train one at a time
    flops_per_image: float = 0.0  # the forward pass, counted with torch's FLOP formulas: the plan's cost unit
    conv_flops_per_image: float = 0.0  # those of convolutions (on a CPU slower per FLOP than matrix products)
    elements_per_image: float = 0.0  # values the forward pass writes (views excluded): its memory traffic
    params: int = 0  # one seed's trainable parameters: what each optimiser step writes
    # What must be equal for variants to share a stack: the weights' names and shapes and, where the stack runs
    # through vmap (which cannot mix layers), the whole network.
    structure: str = ""
    # A piece of one run trains as a stack of one to the numbers it gets in any stack (stacked_forward), a CNN as a
    # stack of two beside a copy of itself (`beside_a_copy`: it then costs a stack of two).
    same_alone: bool = False
    beside_a_copy: bool = False


def check_variant(name: str, cfg: RunConfig, data, stack: bool = True) -> Preflight:
    """Build the variant's model, run one batch forward and backward; UserError naming the variant if it breaks."""
    where = f"variants.{name}"
    n_classes = len(data.classes)
    try:
        mean, std = normalisation(cfg, data)
        x = BatchPipeline(mean, std, 0, False, torch.device("cpu")).normalise(data.train_x[:2])
        y = data.train_y[:2]
        torch.manual_seed(0)
        model = build_model(cfg.model, tuple(data.train_x.shape[1:]), n_classes, cfg.source_dir)
        loss_fn = make_loss(cfg.train, cfg.source_dir)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    try:
        logits = model(x)
    except Exception as exc:
        raise UserError(f"{where}: the model fails on a batch of two {list(x.shape[1:])} images: "
                        f"{type(exc).__name__}: {first_line(exc)}") from None
    if not torch.is_tensor(logits) or tuple(logits.shape) != (2, n_classes):
        shape = list(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise UserError(f"{where}: the model returns {shape} for 2 images; it must return one logit per class, "
                        f"[2, {n_classes}] (the data has {n_classes} classes)")
    try:
        loss = per_seed_loss(loss_fn, logits.unsqueeze(0), y.unsqueeze(0))
        loss.sum().backward()
    except Exception as exc:
        raise UserError(f"{where}: train.loss fails on the model's output: {type(exc).__name__}: {first_line(exc)}; "
                        "a loss must map (logits [N, C], labels [N]) to per-example losses [N]") from None
    work = _work_per_image(model, x)
    fast = stacked_forward.supports(model)
    weights = [[n, list(t.shape)] for n, t in model.state_dict().items()]
    structure = json.dumps(weights if fast else [weights, repr(model)])
    if not stack:
        return Preflight(True, structure=structure, **work)
    if not can_stack(cfg):
        return Preflight(False, "model.dropout > 0: dropout masks come from one random stream, so each seed trains alone",
                         structure=structure, **work)
    if fast:
        return Preflight(True, structure=structure, same_alone=stacked_forward.same_in_a_stack_of_one(model),
                         beside_a_copy=stacked_forward.alone_beside_a_copy(model), **work)
    result = _try_vmap(model, x, y, loss_fn)
    return Preflight(result.stackable, result.why_not, structure=structure, **work)


def _work_per_image(model, x) -> dict[str, float]:
    """What one image's forward pass does, counted in one pass, not timed (the same on any machine): its FLOPs
    (matrix products and convolutions), those of convolutions alone, the values it writes (what pooling,
    activations and normalisation cost beyond their uncounted FLOPs: on a CPU they are bound by memory), and the
    trainable weights each optimiser step writes."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    try:
        with torch.no_grad(), WorkCounter() as work:
            model(x[:1])
        conv = sum(n for op, n in work.flops.items() if "conv" in op)
        counted = float(work.total_flops), float(conv), float(work.elements)
    except Exception:  # a user's network the counters cannot follow: per parameter, two FLOPs and one value
        every = sum(p.numel() for p in model.parameters())
        counted = 2.0 * every, 0.0, float(every)
    return dict(zip(("flops_per_image", "conv_flops_per_image", "elements_per_image"), counted), params=params)


def _try_vmap(model: torch.nn.Module, x, y, loss_fn) -> Preflight:
    """A user's network stacks when torch.func can run two copies of it as one: try it."""
    copies = [copy.deepcopy(model) for _ in range(2)]
    params, buffers = stack_module_state(copies)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    meta = copy.deepcopy(model).to("meta")
    try:
        logits = vmap(lambda p, b, xb: functional_call(meta, (p, b), (xb,)), in_dims=(0, 0, 0))(
            params, buffers, x.expand(2, *x.shape))
        per_seed_loss(loss_fn, logits, y.expand(2, -1)).sum().backward()
    except Exception as exc:
        return Preflight(False, f"torch.func cannot stack this model ({type(exc).__name__}: {first_line(exc)[:120]}); "
                                "its seeds train one at a time")
    return Preflight(True)
