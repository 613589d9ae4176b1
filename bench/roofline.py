"""How close model A's training at batch 128 gets to the machine's fp32 matmul rate.

FLOPs of one training step come from `torch.utils.flop_counter.FlopCounterMode`
over one forward + backward of model A (conv/linear/matmul multiply-adds x 2;
elementwise ops, pooling and the optimiser are not counted), divided by the
batch size. nnstudy's images/s (GroupTrainer, 1 seed, batch 128, timed over
`train_epoch`, one epoch or --limit images, fastest of --repeat epochs) x FLOP
per image = achieved GFLOP/s. The reference is an N x N @ N x N fp32 matmul
(best of --reps) on the same device and threads. Headline: model GFLOP/s / matmul GFLOP/s.

Extra table: channels_last vs the default (contiguous NCHW) memory format, on
a plain model-A module with random tensors at batch 128 and 4 (train steps:
forward, backward, SGD step): the measurement behind nnstudy's choice of
channels-last convolutions on CPU.

    python bench/roofline.py                 # one epoch for the engine rate
    python bench/roofline.py --limit 2560    # quick check
"""

from __future__ import annotations

import time

import _common as C
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

BATCH = 128


def model_a(cfg, device):
    from nnstudy.models import build_model

    torch.manual_seed(0)
    return build_model(cfg.model, (3, 32, 32), 10).to(device)


def count_flops(cfg, device, batch: int) -> tuple[float, float]:
    """(forward FLOPs, forward+backward FLOPs) per image."""
    net = model_a(cfg, device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            net(x)
    with FlopCounterMode(display=False) as train:
        F.cross_entropy(net(x), y).backward()
    return fwd.get_total_flops() / batch, train.get_total_flops() / batch


def matmul_gflops(n: int, reps: int, device) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)  # warm-up
    C.sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        C.sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def train_steps_per_s(cfg, device, batch: int, steps: int, channels_last: bool, rounds: int) -> float:
    """Images/s of plain train steps on random tensors (best of `rounds`)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = model_a(cfg, device).to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(rounds):
        C.sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        C.sync(device)
        best = min(best, time.perf_counter() - start)
    return batch * steps / best


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0],
                      "images for the engine measurement and per channels_last measurement (default: one epoch / 12,800)")
    p.add_argument("--matmul-size", type=int, default=4096, help="N of the N x N fp32 matmul")
    p.add_argument("--reps", type=int, default=5, help="matmul repetitions (best of)")
    C.add_repeat(p, default=3)
    p.add_argument("--rounds", type=int, default=3, help="channels_last: alternating rounds per setting (best of)")
    args = p.parse_args()
    device = C.setup(args)
    if device.type == "cuda":
        print(f"# cuda: matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, cudnn allow_tf32={torch.backends.cudnn.allow_tf32}")
    data = C.load_cifar(args)
    cfg = C.run_config(args, batch_size=BATCH)

    fwd_flops, train_flops = count_flops(cfg, device, BATCH)
    print(f"# model A FLOPs per image: forward {fwd_flops:,.0f}, forward+backward {train_flops:,.0f} "
          f"(FlopCounterMode, batch {BATCH})")

    # nnstudy's engine at batch 128, one seed.
    C.warm_up_engine(cfg, data, device, images=4 * BATCH)
    subset = C.limit_data(data, C.subset_indices(len(data.train_y), args.limit))
    seconds = min(C.time_train_epoch(C.make_trainer(cfg, subset, [0], device)) for _ in range(args.repeat))
    images = len(subset.train_y)
    img_s = images / seconds
    model_gflops = img_s * train_flops / 1e9

    mm_gflops = matmul_gflops(args.matmul_size, args.reps, device)
    ratio = model_gflops / mm_gflops
    C.print_table(["what", "rate", "GFLOP/s", "share of matmul"], [
        [f"nnstudy model A training, batch {BATCH} ({images:,} images in {seconds:.2f} s, best of {args.repeat})", f"{img_s:,.0f} img/s", model_gflops, ratio],
        [f"fp32 matmul {args.matmul_size}x{args.matmul_size} @ {args.matmul_size}x{args.matmul_size} (best of {args.reps})",
         "", mm_gflops, 1.0],
    ], title=f"Achieved GFLOP/s, {C.describe_device(device)}, {torch.get_num_threads()} threads")

    # channels_last vs contiguous, plain module on random tensors.
    rows = []
    cl_images = args.limit or 100 * BATCH
    for batch in (BATCH, 4):
        steps = max(5, cl_images // batch)
        rates = {False: 0.0, True: 0.0}
        for _ in range(args.rounds):  # alternate, so load changes hit both settings alike
            for cl in (False, True):
                rates[cl] = max(rates[cl], train_steps_per_s(cfg, device, batch, steps, cl, rounds=1))
        rows.append([batch, steps, rates[False], rates[True], rates[True] / rates[False]])
    C.print_table(["batch", "steps", "contiguous img/s", "channels_last img/s", "channels_last/contiguous"], rows,
                  title="channels_last on a plain model-A module (random tensors; train steps; best of alternating rounds)")

    print("\nheadline: model GFLOP/s / matmul GFLOP/s at batch 128 (goal: >= 0.35)")
    C.finish(ratio)


if __name__ == "__main__":
    main()
