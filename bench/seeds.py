"""Five seeds of model A: one vectorised GroupTrainer vs five one-seed runs, one after another.

Both sides train the cifar10-cnn study's variant A for the same fixed number
of optimiser steps per seed (--limit, default 2,000; a whole epoch is 12,500
steps at batch 4), on the same fixed subset of steps x batch CIFAR-10 images,
so one `GroupTrainer.train_epoch` is exactly that many steps. Timed:
`train_epoch` only (no evaluation, no trainer construction, no data decode).

    vectorised: GroupTrainer(seeds=[0..4], vectorize=True), one epoch
    sequential: five GroupTrainer(seeds=[s]), one epoch each, times summed

Each side is measured --repeat times (default 3), interleaved, and its
fastest time is kept. Headline: sequential seconds / vectorised seconds at batch 4. The same at
batch 64 is printed for context (its step count is capped at one epoch).

    python bench/seeds.py                  # 2,000 steps per seed
    python bench/seeds.py --limit 200      # quick check
"""

from __future__ import annotations

import _common as C


def measure(args, data, device, batch_size: int, steps: int, seeds: list[int]) -> list:
    steps = min(steps, len(data.train_y) // batch_size)  # at most one epoch of distinct images
    images = steps * batch_size
    subset = C.limit_data(data, C.subset_indices(len(data.train_y), images))
    cfg = C.run_config(args, batch_size=batch_size)
    C.warm_up_engine(cfg, data, device, n_seeds=len(seeds))
    C.warm_up_engine(cfg, data, device, n_seeds=1)

    t_vec = t_seq = float("inf")
    for _ in range(args.repeat):
        vec = C.make_trainer(cfg, subset, seeds, device, vectorize=True)
        assert vec.stack.stacked
        t_vec = min(t_vec, C.time_train_epoch(vec))
        t_seq = min(t_seq, sum(C.time_train_epoch(C.make_trainer(cfg, subset, [s], device)) for s in seeds))
    k = len(seeds)
    print(f"# batch {batch_size}: vectorised {t_vec:.2f} s, sequential {t_seq:.2f} s", flush=True)
    return [batch_size, steps, k * images, t_seq, t_vec, k * images / t_seq, k * images / t_vec, t_seq / t_vec]


def main() -> None:
    p = C.base_parser(__doc__.split("\n\n")[0], "optimiser steps per seed on each side", limit_default=2000)
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    C.add_repeat(p, default=3)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 64],
                   help="batch sizes; the first gives the headline ratio")
    args = p.parse_args()
    device = C.setup(args)
    data = C.load_cifar(args)
    seeds = list(range(args.seeds))
    rows = [measure(args, data, device, bs, args.limit, seeds) for bs in args.batch_sizes]
    C.print_table(["batch", "steps/seed", "images (all seeds)", "sequential s", "vectorised s",
                   "sequential img/s", "vectorised img/s", "sequential/vectorised"], rows,
                  title=f"Model A, seeds {seeds}: the same steps per seed, timed over GroupTrainer.train_epoch")
    print(f"\nheadline: batch {args.batch_sizes[0]} speed-up of vectorised over sequential (goal at batch 4: >= 3)")
    C.finish(rows[0][-1])


if __name__ == "__main__":
    main()
