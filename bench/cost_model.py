"""Fit the planner's cost model (nnstudy/cost.py) to measured epochs, and show what each of its terms buys.

The plan prices a run in FLOPs so that it never depends on timing. FLOPs alone
miss what a CPU spends on memory-bound work (pooling, activations, the
optimiser's pass over the weights) and on each step's fixed overhead, so the
model has four terms, each counted by pre-flight:

    seconds ~ a * FLOPs + a_conv * convolution FLOPs + b * values written + c * steps

(on a CPU a convolution's FLOP is slower than a matrix product's).
This script times one training epoch of the variants of the built-in CIFAR-10
and MNIST studies (their seeds stacked, one thread, a fixed subset of images;
of the MNIST studies only the variants that differ in what they compute, not
in initial values), fits the four prices (non-negative least squares on
relative error), and prints each variant's measured time beside the
FLOPs-only and the four-term predictions. cost.CONV, cost.ELEMENT and
cost.STEP are (a + a_conv)/a, b/a and c/a from a run of this script; they are
fixed numbers in the code (the plan must not vary), and bench/README.md says
where they came from.

    python bench/cost_model.py --data-dir ../shared/data

`ratio:` last: the FLOPs-only model's mean relative error over the four-term model's (above 1: the terms pay).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

import nnstudy
from nnstudy.data.study_data import load_study_data
from nnstudy.driver.cost import CONV, ELEMENT, OPTIMISER_WRITES, STEP
from nnstudy.training import GroupTrainer, TrainOptions
from nnstudy.training.preflight import check_variant

# (study, data under --data-dir, training images timed, variants: None for all): a second or two per variant.
STUDIES = [("cifar10-pooling", "cifar10-jpeg.tar.gz", 5000, None), ("cifar10-cnn", "cifar10-jpeg.tar.gz", 2000, None),
           ("mnist-init", "", 10000, ["default"]), ("mnist-activations", "", 10000, ["relu", "sigmoid", "elu", "gelu"])]


def measure(study: str, data_dir: Path, subset: int, variants, cache: str, repeat: int,
            sizes: list[int] | None = None) -> list[dict]:
    """Each variant's fastest training epoch on `subset` images, with the counts pre-flight makes; its seeds as one
    stack, or as stacks of each of `sizes` seeds (a stack of one as the plan trains it: a CNN beside a copy)."""
    rows, loaded = [], nnstudy.load_study(study, data_dir=str(data_dir))
    for name, cfg in loaded.config.variants.items():
        if variants is not None and name not in variants:
            continue
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"subset": subset})})
        data = load_study_data(cfg, cache)
        counts = check_variant(name, cfg, data)
        for k in sizes or [len(loaded.seeds)]:
            seeds = loaded.seeds[:k]
            trainer = GroupTrainer(cfg, data, seeds, TrainOptions(progress=False, stack_of_one=True))
            trainer.train_epoch(1, 1)  # warm: allocator, kernels chosen
            best = math.inf
            for _ in range(repeat):
                start = time.perf_counter()
                trainer.train_epoch(1, 1)
                best = min(best, time.perf_counter() - start)
            n, steps = subset, math.ceil(subset / cfg.train.batch_size)
            # A CNN's stack of one runs beside a copy: two members' passes, one member's optimiser.
            passes = 2 if len(seeds) == 1 and counts.beside_a_copy else len(seeds)
            rows.append({"name": f"{study}/{name}", "k": len(seeds), "seconds": best,
                         "flops": passes * counts.flops_per_image * 3 * n,
                         "conv": passes * counts.conv_flops_per_image * 3 * n, "steps": steps,
                         "written": passes * counts.elements_per_image * 3 * n
                         + len(seeds) * OPTIMISER_WRITES * counts.params * steps})
            print(f"  {study}/{name}: {best:.2f} s, {len(seeds)} seeds x {n:,} images, {steps} steps", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--cache-dir", default=os.environ.get("NNSTUDY_CACHE") or "~/.cache/nnstudy")
    p.add_argument("--repeat", type=int, default=3, help="timed epochs per variant; the fastest is kept")
    p.add_argument("--stacks", default="", help="stack sizes to time each variant at, e.g. 1,2,3,5 (default: all its "
                                               "seeds as one stack); prints the constants' error by stack size")
    args = p.parse_args()
    sizes = [int(k) for k in args.stacks.split(",")] if args.stacks else None
    torch.set_num_threads(1)  # a worker of the process pool trains on one thread
    data_dir, cache = Path(args.data_dir), str(Path(args.cache_dir).expanduser())
    rows = []
    for study, archive, subset, variants in STUDIES:
        rows += measure(study, data_dir / archive if archive else data_dir, subset, variants, cache, args.repeat,
                        sizes)

    t = np.array([r["seconds"] for r in rows])
    features = np.array([[r["flops"], r["conv"], r["written"], r["steps"]] for r in rows])
    scale = features.max(0)
    # Relative error: each row divided by its own time, so a long epoch does not outweigh a short one.
    coef, _ = nnls(features / scale / t[:, None], np.ones(len(t)))
    coef = coef / scale
    a_only = float(np.sum(features[:, 0] / t) / np.sum((features[:, 0] / t) ** 2))  # FLOPs alone, same weighting
    full, flops_only = features @ coef, features[:, 0] * a_only
    table = [(r["name"], r["seconds"], f, m) for r, f, m in zip(rows, flops_only, full)]
    print(f"\n{'variant':34} {'measured':>9} {'FLOPs only':>11} {'4 terms':>9}")
    for (name, s, f, m), r in zip(table, rows):
        name = f"{name} x{r['k']}" if sizes else name
        print(f"{name:34} {s:8.2f}s {f:8.2f}s {100 * (f / s - 1):+4.0f}% {m:6.2f}s {100 * (m / s - 1):+4.0f}%")
    err_flops = float(np.mean(np.abs(flops_only / t - 1)))
    err_full = float(np.mean(np.abs(full / t - 1)))
    print(f"\nmean |relative error|: FLOPs only {100 * err_flops:.1f}%, four terms {100 * err_full:.1f}%")
    if coef[0] > 0:
        print(f"fitted: CONV = {(coef[0] + coef[1]) / coef[0]:.3g}, ELEMENT = {coef[2] / coef[0]:.3g}, "
              f"STEP = {coef[3] / coef[0]:.3g} FLOPs ({1 / coef[0] / 1e9:.3g} GFLOP/s of matrix products); "
              f"in nnstudy/cost.py now: CONV = {CONV:.3g}, ELEMENT = {ELEMENT:.3g}, STEP = {STEP:.3g}")
    ours = features @ np.array([1.0, CONV - 1, ELEMENT, STEP])
    ours *= np.sum(ours / t) / np.sum((ours / t) ** 2)
    print(f"cost.py's constants, rescaled to seconds: mean |relative error| {100 * np.mean(np.abs(ours / t - 1)):.1f}%")
    if sizes:  # over- (+) or under-pricing (-) by stack size: what the plan's splits rely on
        ks = np.array([r["k"] for r in rows])
        for k in sorted(set(ks)):
            err = ours[ks == k] / t[ks == k] - 1
            print(f"  stacks of {k}: cost.py's mean relative error {100 * err.mean():+.1f}% "
                  f"(mean |error| {100 * np.abs(err).mean():.1f}%)")
    print(f"ratio: {err_flops / err_full:.2f}")


if __name__ == "__main__":
    main()
