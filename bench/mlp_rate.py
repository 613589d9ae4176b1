"""How close the 1000-epoch study's training epoch gets to this machine's fp32 matrix-product peak.

The study (`mnist-activations-1000`) trains each variant's 5 seeds as one stack, on one thread per
worker: an MLP 784-256-128-10 at batch 64 on full MNIST. This script times `GroupTrainer.train_epoch`
of that stack (best of --repeat, after a warm-up epoch on a few batches) and what an evaluated epoch
adds (the test set and the probes, every epoch and at the study's `train.eval_every` cadence), counts
the FLOPs of one stacked training step with torch's FlopCounterMode (matrix products x 2; elementwise ops
and the optimiser are not counted), and measures, in the same run and on the same thread count, an
N x N @ N x N fp32 matrix product (best of --reps). Headline: the epoch's GFLOP/s over the matmul's.

    python bench/mlp_rate.py --data-dir ../shared/data             # one full epoch
    python bench/mlp_rate.py --data-dir ../shared/data --limit 12800
"""

from __future__ import annotations

import time

import _common as C
import torch
from roofline import matmul_gflops
from torch.utils.flop_counter import FlopCounterMode

from nnstudy.config.schema import evaluation_every

STUDY, VARIANTS = "mnist-activations-1000", ("relu", "leaky-relu")


def study_config(variant: str, data_dir: str):
    from nnstudy.config.load import load_study

    return load_study(STUDY, {"data_dir": data_dir}).variants[variant]


def step_flops(trainer) -> float:
    """FLOPs of one training step of the whole stack (forward + backward), from one batch."""
    bs = trainer.cfg.train.batch_size
    idx = torch.arange(bs).expand(len(trainer.seeds), bs)
    x = trainer.pipeline.train_batch(trainer.gather_train(idx), {})
    y = trainer.train_y[idx]
    with FlopCounterMode(display=False) as counted:
        trainer._losses(trainer.stack.forward_train(x).float(), y).sum().backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return counted.get_total_flops()


def stream_gbytes(numel: int, reps: int, device) -> float:
    """Bytes per second of `c = a + b` over arrays as large as the stack's parameters (two reads, one write): the
    memory rate at which an optimiser can at best stream its tensors, on the same thread."""
    a, b = torch.randn(numel, device=device), torch.randn(numel, device=device)
    c = torch.empty_like(a)
    torch.add(a, b, out=c)
    best = float("inf")
    for _ in range(reps * 20):
        start = time.perf_counter()
        torch.add(a, b, out=c)
        C.sync(device)
        best = min(best, time.perf_counter() - start)
    return 3 * 4 * numel / best / 1e9


def optimizer_seconds(trainer, steps: int = 50) -> float:
    """One optimiser step as the trainer takes it (its real kernels), after a backward: mean over `steps`."""
    step_flops(trainer)  # leaves no grads: make some
    bs = trainer.cfg.train.batch_size
    idx = torch.arange(bs).expand(len(trainer.seeds), bs)
    x = trainer.pipeline.train_batch(trainer.gather_train(idx), {})
    trainer._losses(trainer.stack.forward_train(x).float(), trainer.train_y[idx]).sum().backward()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0], "training images per timed epoch (default: all 60,000)")
    p.add_argument("--matmul-size", type=int, default=2048, help="N of the N x N fp32 matmul")
    p.add_argument("--reps", type=int, default=5, help="matmul repetitions (best of)")
    C.add_repeat(p, default=2)
    args = p.parse_args()
    if args.threads is None:
        args.threads = 1  # as each process-pool worker of the study trains
    device = C.setup(args)
    from nnstudy.data.study_data import load_study_data

    rows, ratios, look_shares = [], [], []
    for variant in VARIANTS:
        cfg = study_config(variant, args.data_dir)
        data = load_study_data(cfg, str(C.Path(args.cache_dir).expanduser()))
        subset = C.limit_data(data, C.subset_indices(len(data.train_y), args.limit))
        seeds = [0, 1, 2, 3, 4]
        C.warm_up_engine(cfg, data, device, n_seeds=len(seeds), images=16 * cfg.train.batch_size)
        trainer = C.make_trainer(cfg, subset, seeds, device, probes=True)  # as `nnstudy run` trains
        flops = step_flops(trainer) * len(subset.train_y) / cfg.train.batch_size
        train_s = min(C.time_train_epoch(trainer) for _ in range(args.repeat))
        start = time.perf_counter()
        trainer.evaluate()
        if trainer.probers:
            trainer.probe(1, shifts=False, extra={})
        look_s = time.perf_counter() - start  # what an evaluated epoch adds: the test set and the probes
        every = evaluation_every(cfg.train)
        look_shares.append((look_s / (train_s + look_s), look_s / every / (train_s + look_s / every), every))
        mm = matmul_gflops(args.matmul_size, args.reps, device)  # beside each measurement: load hits both alike
        rate = flops / train_s / 1e9
        ratios.append(rate / mm)
        # The ceiling: every matrix product at the matmul's peak, plus the least an SGD step with momentum must
        # move (read weights, momenta, gradients; write weights, momenta) at the streaming rate; nothing else.
        numel = sum(q.numel() for q in trainer.stack.parameters())
        gbs = stream_gbytes(numel, args.reps, device)
        steps = len(subset.train_y) / cfg.train.batch_size
        floor_s = flops / (mm * 1e9) + steps * 5 * 4 * numel / (gbs * 1e9)
        opt_s = optimizer_seconds(trainer) * steps
        rows.append([f"{variant} x{len(seeds)} seeds, batch {cfg.train.batch_size}", len(subset.train_y), train_s,
                     look_s, rate, mm, rate / mm, opt_s, gbs, flops / floor_s / 1e9 / mm])
    C.print_table(["stack", "images", "train s", "test+probes s", "GFLOP/s", "matmul GFLOP/s", "share",
                   "optimiser s", "stream GB/s", "ceiling share"], rows,
                  title=f"{STUDY}: a training epoch against the fp32 matmul peak, {C.describe_device(device)}, "
                        f"{torch.get_num_threads()} thread(s)")
    for (every_epoch, cadence, every), variant in zip(look_shares, VARIANTS):
        print(f"{variant}: the test set and probes take {every_epoch:.1%} of an epoch evaluated every epoch, "
              f"{cadence:.1%} at the study's cadence (every {every} epochs; train.eval_every)")
    print("optimiser s: the epoch's optimiser steps, as the trainer takes them; ceiling share: the share if the\n"
          "matrix products ran at the matmul's peak and the optimiser only streamed its tensors once at the\n"
          "measured rate, with no other work (elementwise layers, loss, per-step overhead all free)")
    print("\nheadline: the stacked epoch's GFLOP/s over the matmul's (the issue's goal: >= 0.8)")
    C.finish(min(ratios))


if __name__ == "__main__":
    main()
