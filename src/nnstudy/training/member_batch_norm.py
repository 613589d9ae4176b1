"""Batch norm over a stack's channels whose every number is each member's own, wherever it stands.

The stacked forward lays K members' channels side by side ([B, K*C, ...]) and normalises them in one call. In
torch's CPU kernels the forward, the running statistics and the weight and bias gradients are per channel whatever
the channel count, but the input gradient's vector loop leaves a tail of channels (K*C not a multiple of the
vector width) on a path that rounds differently: a member's numbers then depended on the stack's size and its
place in it (cifar10-cnn's B, 6 and 16 channels a member; bench/stack_of_one.py). Here the input gradient is
written out as one-operation elementwise kernels (subtract, multiply), which round the same on every path, from
the kernel's own per-channel sums; the forward and the other gradients are torch's. Evaluation (running statistics)
is elementwise per channel in torch's kernel already, and stays torch's.
"""

from __future__ import annotations

import torch


class _MemberBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.has_bias = eps, bias is not None
        return out

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        has_weight = weight is not None
        # Per-channel sums of dy and dy * x_hat, from torch's kernel (the same on every channel).
        _, dw, db = torch.ops.aten.native_batch_norm_backward(dy, x, weight, None, None, mean, invstd, True, ctx.eps,
                                                               [False, True, True])
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = x.numel() // x.shape[1]
        scale = invstd * weight if has_weight else invstd
        slope = (dw / n * invstd * scale).view(shape)
        centred = torch.sub(x, mean.view(shape)).mul_(slope)  # in place: two temporaries, not five
        dx = torch.sub(dy, (db / n).view(shape)).mul_(scale.view(shape)).sub_(centred)
        return dx, dw if has_weight else None, db if ctx.has_bias else None, None, None, None, None


def member_batch_norm(x: torch.Tensor, weight, bias, running_mean, running_var, momentum: float,
                      eps: float) -> torch.Tensor:
    """Training-mode batch norm of x [B, channels, ...] (running statistics updated in place), its gradients the
    same for a channel wherever it stands among the others."""
    return _MemberBatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)
