"""The forward pass of K stacked copies of a `Sequential`, without vmap.

Same arithmetic as `vmap(functional_call(...))`, written out per layer type so
each layer is one kernel call over all seeds with no per-op batching overhead
(which dominates at the reference protocol's batch size of 4):

- convolutions run as one grouped convolution (groups = K) on activations laid
  out as [B, K*C, H, W]; BatchNorm, pooling and activations act per channel,
  so they work on that layout unchanged, each seed's channels apart;
- linear layers are one batched matmul over [K, B, F].

Parameters and buffers keep the `stack_module_state` layout [K, ...] (Linear
weights transposed, see `transposed_weights`), so a seed's state is index k (the views below share their storage, which
is how BatchNorm running statistics are updated in place per seed).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from nnstudy.models.layers import per_channel_modules
from nnstudy.training.member_batch_norm import member_batch_norm


def supports(module: nn.Module) -> bool:
    """True when every layer has a stacked form here (else fall back to vmap).

    Activations and poolings registered with `per_channel=True` apply as they are.
    """
    if not isinstance(module, nn.Sequential):
        return False
    known = per_channel_modules() + (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.Flatten)
    return all(isinstance(m, known) for m in module)


def same_in_a_stack_of_one(module: nn.Module) -> bool:
    """Whether a seed of this network trains to the same numbers stacked alone (K = 1) as in a stack of two or more,
    so that the plan may split a stack down to single runs: every network with a stacked form here. Batched matrix
    products, per-value layers and batch norm (member_batch_norm.py) are the same at one member; a network with
    convolutions runs its stack of one beside a copy of itself (`beside_a_copy`). Checked for every built-in study
    (bench/stack_of_one.py) and in tests/test_training.py."""
    return supports(module)


def alone_beside_a_copy(module: nn.Module) -> bool:
    """Whether this network's stack of one runs as a stack of two, beside a detached copy of itself: a grouped
    convolution at one group takes another algorithm than at two or more (its weight and input gradients differ
    in the last bits), so alone such a member would round differently from any stack. It then costs a stack of
    two, as the plan prices it."""
    return any(isinstance(m, nn.Conv2d) for m in module)


def beside_a_copy(forward):
    """`forward(params, buffers, x, shared_input)` of a stack of two, run for a stack of one: the member beside a
    detached copy of itself (its weights, statistics and batch), keeping its own half. Every layer then runs as in
    a stack of two, kernels and memory layouts alike, and each member's arithmetic is its own in every kernel here,
    so the member gets the numbers of any stack. The copy's outputs are dropped (no gradient reaches the member
    through them) and the member's running statistics are written back."""
    def run(params: dict, buffers: dict, x: torch.Tensor, shared_input: bool) -> torch.Tensor:
        doubled = {n: torch.cat([t, t.detach()]) for n, t in params.items()}
        copies = {n: torch.cat([t, t]) for n, t in buffers.items()}
        out = forward(doubled, copies, x if shared_input else torch.cat([x, x]), shared_input)[:1]
        with torch.no_grad():
            for n, t in buffers.items():
                t.copy_(copies[n][:1])
        return out
    return run


def apart(module: nn.Module, mixed: dict, k: int) -> dict:
    """The spans of layers that run per run of members: those that differ between members (`mixed`, as
    SeedStack._mixed_layers gives them), and every per-value layer whose kernels are not exact (models/layers.py)
    one member at a time. Applied to all seeds at once, such a layer's last values take a scalar path that rounds
    differently, so a seed's numbers would depend on its place in the stack. Decided once, not at every step."""
    per_value, exact = per_channel_modules(), per_channel_modules(exact_only=True) + (nn.Flatten,)
    spans = {}
    for first, (span, runs) in mixed.items():
        if not all(isinstance(layer, exact) for _, _, seq in runs for layer in seq):
            runs = [(j, j + 1, seq) for start, stop, seq in runs for j in range(start, stop)]
        spans[first] = (span, runs)
    in_spans = {name for span, _ in mixed.values() for name in span}
    for name, layer in module.named_children():
        if name not in in_spans and isinstance(layer, per_value) and not isinstance(layer, exact):
            spans[name] = ([name], [(j, j + 1, nn.Sequential(layer)) for j in range(k)])
    return spans


def transposed_weights(module: nn.Module) -> set[str]:
    """Parameters kept transposed in the stack: every Linear weight, as [K, in, out].

    Then h @ W is one batched matmul whose weight gradient comes out in the
    parameter's own layout; with [K, out, in] the backward pays a transposing
    copy of every weight gradient (measured: linear layers forward+backward
    211 vs 358 us at K=5, batch 4, on one CPU thread).
    """
    return {f"{name}.weight" for name, m in module.named_modules() if isinstance(m, nn.Linear)}


def stacked_forward(module: nn.Sequential, params: dict, buffers: dict, x: torch.Tensor, k: int,
                    shared_input: bool = False, channels_last: bool = False, mixed: dict | None = None) -> torch.Tensor:
    """x: [K, B, C, H, W] (or [B, C, H, W] with `shared_input`) -> logits [K, B, classes].

    `channels_last` runs the convolutions in NHWC layout: on CPU the grouped
    convolution is then 2-3x faster (measured: bench/roofline.py).
    `mixed`: spans of layers without weights that run per run of members
    (`apart`): each run of members goes through its own layers.
    """
    mixed, skip = mixed or {}, set()
    b = x.shape[0] if shared_input else x.shape[1]
    if shared_input:
        x = x.unsqueeze(0).expand(k, *x.shape)
    if isinstance(module[0], nn.Conv2d):  # activations as [B, K*C, H, W], seed-major channels
        is_flat = False
        if channels_last:  # one copy straight into NHWC: [B, H, W, K*C], seen as NCHW
            h = x.permute(1, 3, 4, 0, 2).reshape(b, x.shape[3], x.shape[4], -1).permute(0, 3, 1, 2)
        else:
            h = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])
    elif isinstance(module[0], nn.Flatten):
        h, is_flat = x.flatten(2), True
    else:
        raise ValueError("a stacked model starts with Conv2d or Flatten")
    for name, layer in module.named_children():
        def p(key: str) -> torch.Tensor:
            return params[f"{name}.{key}"] if f"{name}.{key}" in params else buffers[f"{name}.{key}"]

        if name in skip:
            continue
        if name in mixed:
            span, runs = mixed[name]
            skip.update(span)
            h = _per_member(runs, h, k, is_flat)
        elif isinstance(layer, nn.Conv2d):
            w = p("weight")  # [K, O, C, kh, kw]
            bias = p("bias").reshape(-1) if layer.bias is not None else None
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), bias, layer.stride, layer.padding, layer.dilation, groups=k)
        elif isinstance(layer, nn.BatchNorm2d):
            h = _batch_norm(layer, p, name, buffers, h)
        elif isinstance(layer, nn.Flatten):
            if not is_flat:
                # [K, B, C*H*W], each seed's features in order; contiguous so the
                # batched matmuls (and their gradients) take the BLAS path.
                h = h.reshape(b, k, -1).transpose(0, 1).contiguous()
                is_flat = True
        elif isinstance(layer, nn.Linear):
            h = torch.baddbmm(p("bias").unsqueeze(1), h, p("weight"))  # weight stored [K, in, out]
        elif isinstance(layer, nn.BatchNorm1d):
            f = h.shape[-1]
            h = _batch_norm(layer, p, name, buffers, _ContiguousGrad.apply(h).transpose(0, 1).reshape(b, k * f))
            h = h.reshape(b, k, f).transpose(0, 1)
        else:
            h = layer(h)
    return h


def _per_member(runs, h: torch.Tensor, k: int, is_flat: bool) -> torch.Tensor:
    """Members [start, stop) through their own layers: a slice of the stack ([K, B, F]) or of its channels."""
    if is_flat:
        return torch.cat([layer(h[start:stop]) for start, stop, layer in runs])
    c = h.shape[1] // k
    return torch.cat([layer(h[:, start * c:stop * c]) for start, stop, layer in runs], 1)


def _batch_norm(layer, p, name, buffers, h):
    """BatchNorm over channels laid out seed-major: per seed, per channel, as alone (member_batch_norm.py: each
    channel's gradients the same wherever it stands)."""
    training = layer.training
    if training and layer.track_running_stats:
        with torch.no_grad():
            buffers[f"{name}.num_batches_tracked"].add_(1)
    momentum = layer.momentum if layer.momentum is not None else 0.1
    mean, var = p("running_mean").view(-1), p("running_var").view(-1)
    weight, bias = p("weight").reshape(-1), p("bias").reshape(-1)
    if training:
        return member_batch_norm(h, weight, bias, mean, var, momentum, layer.eps)
    return F.batch_norm(h, mean, var, weight, bias, False, momentum, layer.eps)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose gradient leaves contiguous: [K, B, F] seen through batch norm's [B, K*F] layout gets back a
    transposed gradient, and the layer before reduced it (its bias gradient) over a stride of K*F, whose vector
    tail put a member's numbers on another path by its place in the stack (session 23)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()
