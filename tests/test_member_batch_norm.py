"""Stacked batch norm gives each member's channels the same numbers wherever they stand (training/member_batch_norm.py)."""

import pytest
import torch
import torch.nn.functional as F

from nnstudy.training.member_batch_norm import member_batch_norm


def _member(m: int, shape: tuple) -> tuple:
    g = torch.Generator().manual_seed(100 + m)
    c = shape[1]
    return (torch.randn(*shape, generator=g) * 3 + 1, torch.randn(c, generator=g), torch.randn(c, generator=g),
            torch.randn(*shape, generator=g))


def _stack(members: list, norm, channels_last: bool) -> list[torch.Tensor]:
    """One training step's numbers of the members side by side: outputs, input/weight/bias gradients, statistics."""
    def cat(i):
        t = torch.cat([m[i] for m in members], 1 if members[0][i].dim() > 1 else 0)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t
    x, w, b, dy = cat(0).requires_grad_(), cat(1).requires_grad_(), cat(2).requires_grad_(), cat(3)
    mean, var = torch.zeros(w.shape[0]), torch.ones(w.shape[0])
    y = norm(x, w, b, mean, var, 0.1, 1e-5)
    y.backward(dy)
    return [y.detach(), x.grad, w.grad, b.grad, mean, var]


def _native(x, w, b, mean, var, momentum, eps):
    return F.batch_norm(x, mean, var, w, b, True, momentum, eps)


@pytest.mark.parametrize("shape,channels_last", [((4, 6, 14, 14), True), ((4, 16, 5, 5), True), ((3, 30, 6, 6), False),
                                                 ((16, 30), False), ((24, 100), False)])
def test_a_members_numbers_do_not_depend_on_its_stack(shape, channels_last, one_thread):
    c, seen = shape[1], {}
    for k in range(1, 6):
        for order in (list(range(k)), list(range(k))[::-1]):
            out = _stack([_member(m, shape) for m in order], member_batch_norm, channels_last)
            for place, m in enumerate(order):
                mine = [t[:, place * c:(place + 1) * c] if t.dim() > 1 else t[place * c:(place + 1) * c] for t in out]
                first = seen.setdefault(m, mine)
                assert all(torch.equal(a, b) for a, b in zip(first, mine)), f"member {m}, {place + 1} of {k}"
    # The same numbers as torch's batch norm to float rounding: forward and statistics bit for bit, and gradients
    # up to the input's, written out here.
    ours = _stack([_member(m, shape) for m in range(3)], member_batch_norm, channels_last)
    torch_s = _stack([_member(m, shape) for m in range(3)], _native, channels_last)
    for name, a, b in zip(("out", "dx", "dw", "db", "mean", "var"), ours, torch_s):
        if name == "dx":
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item()), name
        else:
            assert torch.equal(a, b), name


def test_without_weights_or_bias():
    x = torch.randn(8, 12, requires_grad=True)
    y = member_batch_norm(x, None, None, None, None, 0.1, 1e-5)
    y.backward(torch.ones_like(y) + torch.arange(12.0))
    ref = x.detach().clone().requires_grad_()
    F.batch_norm(ref, None, None, None, None, True, 0.1, 1e-5).backward(torch.ones_like(y) + torch.arange(12.0))
    assert torch.allclose(x.grad, ref.grad, atol=1e-5)
