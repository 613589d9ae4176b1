"""How much of a small training step is autograd's bookkeeping, not arithmetic.

Model A (the tutorial net) on random tensors, SGD with momentum (foreach ops),
channels-last, the same threads on both sides. Two ways of doing the same step:

* **autograd**: `net(x)`, `cross_entropy(...).backward()`, `SGD.step()`, as
  nnstudy's engine and every PyTorch loop do it;
* **by hand**: the same forward under `no_grad`, then the backward written out
  over the very same ATen kernels autograd calls (`convolution_backward`,
  `max_pool2d_with_indices_backward`, `threshold_backward`, matmuls), and the
  momentum update as three `_foreach` ops. No graph is recorded or walked.

The first step's gradients are checked against autograd's (the script stops if
they differ by more than 1e-4), so the hand-written step computes the same
thing. What the two timings differ by is what autograd costs per step: at
batch 4 that is a large share, at batch 128 almost nothing. nnstudy does not
hand-write backward passes (one per model would be a second autograd to keep
correct); this script measures what that choice leaves on the table.

    python bench/autograd_overhead.py              # 2,000 steps per side, batch 4 and 128
    python bench/autograd_overhead.py --limit 200  # quick check
"""

from __future__ import annotations

import time

import _common as C
import torch
import torch.nn.functional as F

from nnstudy.models.reference import TutorialNet

aten = torch.ops.aten
LR, MOMENTUM = 0.001, 0.9


def hand_step(params, momenta, x, y):
    """One SGD-with-momentum step of TutorialNet, backward written out; returns the gradients."""
    w1, b1, w2, b2, f1, fb1, f2, fb2, f3, fb3 = params
    one, zero = [1, 1], [0, 0]
    with torch.no_grad():
        r1 = aten.convolution(x, w1, b1, one, zero, one, False, zero, 1).relu_()
        p1, i1 = aten.max_pool2d_with_indices(r1, [2, 2], [2, 2])
        r2 = aten.convolution(p1, w2, b2, one, zero, one, False, zero, 1).relu_()
        p2, i2 = aten.max_pool2d_with_indices(r2, [2, 2], [2, 2])
        h0 = p2.flatten(1)
        h1 = torch.addmm(fb1, h0, f1.t()).relu_()
        h2 = torch.addmm(fb2, h1, f2.t()).relu_()
        logits = torch.addmm(fb3, h2, f3.t())
        # d(mean cross-entropy)/d(logits) = (softmax - one-hot) / batch
        g = logits.softmax(1)
        g[torch.arange(len(y)), y] -= 1
        g /= len(y)
        grads = [None] * 10
        grads[9], grads[8] = g.sum(0), g.t().mm(h2)
        g = aten.threshold_backward(g.mm(f3), h2, 0)
        grads[7], grads[6] = g.sum(0), g.t().mm(h1)
        g = aten.threshold_backward(g.mm(f2), h1, 0)
        grads[5], grads[4] = g.sum(0), g.t().mm(h0)
        g = g.mm(f1).view_as(p2)
        g = aten.max_pool2d_with_indices_backward(g, r2, [2, 2], [2, 2], zero, one, False, i2)
        g = aten.threshold_backward(g, r2, 0)
        g, grads[2], grads[3] = aten.convolution_backward(g, p1, w2, [w2.shape[0]], one, zero, one, False, zero, 1,
                                                          [True, True, True])
        g = aten.max_pool2d_with_indices_backward(g, r1, [2, 2], [2, 2], zero, one, False, i1)
        g = aten.threshold_backward(g, r1, 0)
        _, grads[0], grads[1] = aten.convolution_backward(g, x, w1, [w1.shape[0]], one, zero, one, False, zero, 1,
                                                          [False, True, True])
        torch._foreach_mul_(momenta, MOMENTUM)  # SGD's momentum: buf = 0.9 * buf + grad; p -= lr * buf
        torch._foreach_add_(momenta, grads)
        torch._foreach_add_(params, momenta, alpha=-LR)
    return grads


def make_net(device):
    torch.manual_seed(0)
    return TutorialNet().to(device, memory_format=torch.channels_last)


def check_gradients(device, batch: int) -> float:
    """Largest |hand - autograd| over all first-step gradients."""
    net = make_net(device)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    F.cross_entropy(net(x), y).backward()
    params = [p.detach().clone() for p in net.parameters()]
    hand = hand_step(params, [torch.zeros_like(p) for p in params], x, y)
    return max((h - p.grad).abs().max().item() for h, p in zip(hand, net.parameters()))


def time_steps(device, batches, by_hand: bool) -> float:
    net = make_net(device)
    if by_hand:
        params = [p.detach() for p in net.parameters()]
        momenta = [torch.zeros_like(p) for p in params]
    else:
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    C.sync(device)
    start = time.perf_counter()
    for x, y in batches:
        if by_hand:
            hand_step(params, momenta, x, y)
        else:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
    C.sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0], "steps per side and batch size (default 2,000)")
    C.add_repeat(p, default=3)
    args = p.parse_args()
    device = C.setup(args)
    steps = args.limit or 2000
    rows, ratio = [], None
    for batch in (4, 128):
        diff = check_gradients(device, batch)
        if diff > 1e-4:
            raise SystemExit(f"hand-written gradients differ from autograd's by {diff:.2e} at batch {batch}")
        torch.manual_seed(1)
        batches = [(torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last),
                    torch.randint(0, 10, (batch,), device=device)) for _ in range(min(steps, 200))]
        batches = (batches * (steps // len(batches) + 1))[:steps]  # cycled: memory stays small at batch 128
        with C.nnstudy_threads(device, batch):
            time_steps(device, batches[:20], True), time_steps(device, batches[:20], False)  # warm-up
            best = {False: float("inf"), True: float("inf")}
            for _ in range(args.repeat):  # interleaved, so load changes hit both sides alike
                for by_hand in (False, True):
                    best[by_hand] = min(best[by_hand], time_steps(device, batches, by_hand))
            threads = torch.get_num_threads()
        us = {k: v / steps * 1e6 for k, v in best.items()}
        rows.append([batch, threads, us[False], us[True], us[False] - us[True],
                     batch * steps / best[False], batch * steps / best[True], best[False] / best[True], diff])
        ratio = ratio or best[False] / best[True]
    C.print_table(["batch", "threads", "autograd µs/step", "by hand µs/step", "autograd's share µs",
                   "autograd img/s", "by hand img/s", "autograd/by hand", "max |grad diff|"], rows,
                  title=f"Model A train step, {steps:,} steps a side, best of {args.repeat} interleaved repeats, "
                        f"{C.describe_device(device)}")
    print("\nheadline: autograd step time / hand-written step time at batch 4 (what autograd costs a small step)")
    C.finish(ratio)


if __name__ == "__main__":
    main()
