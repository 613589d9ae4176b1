"""Does a run train to the same numbers alone, as a stack of one, as in a stack of three? Checked per variant.

The plan splits a stack down to single runs (3 seeds on 2 workers: 2 + 1) only because a piece of one run trains,
on one thread, to the numbers it gets in any stack: an MLP alone, a CNN beside a copy of itself
(training/stacked_forward.py). Kernels choose their paths by CPU, library version and shape, so this re-checks it on
the built-in studies' own networks, on a cut of their data: every variant's seeds 0-2 as one stack, then [0, 2]
and [1] (the plan's halves), comparing each seed's losses and accuracies of every epoch, its test predictions and
its probes (all but `step_ms`, a timing). Prints one line a variant and `differ:` with the count of variants whose
numbers differ (0 where the plan's splits change nothing).

    python bench/stack_of_one.py --data-dir ../shared/data
    python bench/stack_of_one.py --data-dir ../shared/data --studies cifar10-cnn --subset 1000 --epochs 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from nnstudy.config.load import load_study
from nnstudy.data.study_data import load_study_data
from nnstudy.training import TrainOptions
from nnstudy.training.trainer import GroupTrainer

STUDIES = ("cifar10-cnn", "cifar10-pooling", "mnist-activations", "mnist-loss", "mnist-init")


def trained(cfg, data, seeds: list[int]) -> dict[int, tuple]:
    """seed -> (its epochs' numbers, its last test predictions, its probes without timings)."""
    trainer = GroupTrainer(cfg, data, seeds, TrainOptions(progress=False, stack_of_one=True, probes=True))
    preds = {}
    trainer.fit(lambda tr, p: preds.update(p))
    out = {}
    for k, seed in enumerate(seeds):
        state = trainer.states[k]
        rows = [(r.train_loss, r.train_acc, r.test_loss, r.test_acc) for r in state.history]
        probes = {e: {n: v for n, v in p.items() if n != "step_ms"} for e, p in state.probes.items()}
        out[seed] = (rows, preds[k].tolist(), probes)
    return out


def first_difference(a: tuple, b: tuple) -> str:
    rows_a, rows_b = a[0], b[0]
    for epoch, (x, y) in enumerate(zip(rows_a, rows_b), 1):
        if x != y:
            return f"epoch {epoch}: {x} vs {y}"
    if a[1] != b[1]:
        return "test predictions"
    return next(f"probe {n} at epoch {e}" for e in a[2] for n in a[2][e] if a[2][e][n] != b[2].get(e, {}).get(n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--studies", default=",".join(STUDIES))
    p.add_argument("--subset", type=int, default=1000, help="training images (the test set: a third of it)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cache-dir", default=os.environ.get("NNSTUDY_CACHE") or "~/.cache/nnstudy",
                   help="nnstudy's decoded-data cache")
    args = p.parse_args()
    torch.set_num_threads(1)  # as the process pool trains each job
    differ = 0
    for name in args.studies.split(","):
        settings = [f"dataset.subset={args.subset}", f"dataset.test_subset={max(args.subset // 3, 1)}",
                    f"train.epochs={args.epochs}", f"report_epochs=[{args.epochs}]"]
        study = load_study(name, {"data_dir": args.data_dir, "settings": settings})
        for variant, cfg in study.variants.items():
            data = load_study_data(cfg, str(Path(args.cache_dir).expanduser()))
            three = trained(cfg, data, [0, 1, 2])
            halves = {**trained(cfg, data, [0, 2]), **trained(cfg, data, [1])}
            bad = {s: first_difference(three[s], halves[s]) for s in three if three[s] != halves[s]}
            differ += bool(bad)
            print(f"{name:18} {variant:14} " + ("same" if not bad else "DIFFERS " + "; ".join(
                f"seed {s}: {why}" for s, why in bad.items())), flush=True)
    print(f"differ: {differ}")


if __name__ == "__main__":
    main()
