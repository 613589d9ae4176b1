"""A whole built-in study: nnstudy against the tutorial-style loop, or nnstudy's stacking plans against each other.

The unit a user waits for is the study, not one run. Every side trains every
(variant, seed) run of the study on the same fixed number of training images
(--subset) for the same epochs (--epochs), in this one process run:

    tutorial: for each variant, for each seed: torchvision dataset + DataLoader
              (ToTensor, Normalize), the variant's network and loss, the plain
              zero_grad/forward/backward/step loop, then test accuracy
    nnstudy:  Study.run() end to end: pre-flight, planning, stacked training,
              probes, store, report (default executor: a process pool on CPU)
    nnstudy, variants unstacked: the same with stack_variants="never"

    python bench/study.py --data-dir ../shared/data                     # mnist-init, 6,000 images, 2 epochs
    python bench/study.py --data-dir ../shared/data --study mnist-loss --subset 60000 --epochs 5

Prints the wall times and `ratio:` (tutorial / nnstudy) last.

With --stacking (any built-in study, CIFAR-10 ones too) it times the plans
instead: variants stacked wherever they can ("always"), never stacked
("never"), and the planner's choice by its cost model ("auto"), each --repeat
times interleaved, best kept; it prints each side's mean test accuracy (the
planner's choice trains the same stacks as one of the others, so the same
numbers) and `ratio:` last: the better of always/never over auto (at least
1.0 when the planner chose well).

    python bench/study.py --stacking --study cifar10-pooling --data-dir ../shared/data/cifar10-jpeg.tar.gz \
        --subset 5000 --epochs 1
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torchvision import transforms

import nnstudy
from nnstudy.models import build_model
from nnstudy.training.losses import make_loss


def tutorial_study(study, data_dir: str, subset: int, epochs: int) -> float:
    """Every (variant, seed) in turn, the way a notebook does it; returns seconds."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = torch.utils.data.Subset(torchvision.datasets.MNIST(data_dir, train=True, transform=transform), range(subset))
    test = torchvision.datasets.MNIST(data_dir, train=False, transform=transform)
    start = time.perf_counter()
    for cfg in study.config.variants.values():
        for seed in study.seeds:
            torch.manual_seed(seed)
            net = build_model(cfg.model, (1, 28, 28), 10)
            loss_fn = make_loss(cfg.train)
            criterion = lambda out, y: loss_fn(out, y).mean()
            optimizer = torch.optim.SGD(net.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum)
            loader = torch.utils.data.DataLoader(train, batch_size=cfg.train.batch_size, shuffle=True)
            for _ in range(epochs):
                net.train()
                for inputs, labels in loader:
                    optimizer.zero_grad()
                    loss = criterion(net(inputs), labels)
                    loss.backward()
                    optimizer.step()
                net.eval()
                correct = 0
                with torch.no_grad():
                    for inputs, labels in torch.utils.data.DataLoader(test, batch_size=1000):
                        correct += int((net(inputs).argmax(1) == labels).sum())
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--study", default="mnist-init", help="a built-in study (MNIST, unless --stacking)")
    p.add_argument("--subset", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--stacking", action="store_true", help="time stacked vs unstacked vs the planner's choice")
    p.add_argument("--repeat", type=int, default=2, help="--stacking: runs of each side, interleaved; best kept")
    args = p.parse_args()
    study = _study_on_subset(args.study, args.data_dir, args.subset, args.epochs)
    runs = len(study.variants) * len(study.seeds)
    if args.stacking:
        return _stacking(study, args, runs)

    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        study.run(Path(tmp) / "warm", cache_dir=cache, progress=False, log=io.StringIO())  # decode MNIST, import all
        for name, options in (("nnstudy", {}), ("nnstudy, variants unstacked", {"stack_variants": "never"})):
            start = time.perf_counter()
            study.run(Path(tmp) / name, cache_dir=cache, progress=False, force=True, log=io.StringIO(), **options)
            seconds[name] = time.perf_counter() - start
            print(f"# {name}: {seconds[name]:.1f} s", flush=True)
    seconds["tutorial loop"] = tutorial_study(study, args.data_dir, args.subset, args.epochs)
    print(f"# tutorial loop: {seconds['tutorial loop']:.1f} s", flush=True)
    print(f"{args.study}: {runs} runs x {args.epochs} epochs on {args.subset:,} images: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    print(f"variant stacking: {seconds['nnstudy, variants unstacked'] / seconds['nnstudy']:.2f}x")
    print(f"ratio: {seconds['tutorial loop'] / seconds['nnstudy']:.2f}")


def _study_on_subset(name: str, data_dir: str, subset: int, epochs: int):
    """The built-in study on `subset` training images for `epochs` epochs (claims and report epochs past it dropped)."""
    raw = nnstudy.load_study(name, data_dir=data_dir).config.model_dump(mode="json", by_alias=True)
    for v in raw["variants"].values():
        v["dataset"]["subset"] = subset
        v["train"]["epochs"] = epochs
        v.pop("source_dir", None)
    baseline = raw["baseline"] or next(iter(raw["variants"]))
    raw.update({k: raw["variants"][baseline][k] for k in ("dataset", "model", "train")})
    raw["report_epochs"] = [e for e in raw["report_epochs"] if e <= epochs]
    raw["claims"] = [c for c in raw["claims"] if (c.get("epoch") or 0) <= epochs]
    raw.pop("base")
    return nnstudy.load_study(raw)


def _stacking(study, args, runs: int) -> None:
    """Wall time of the whole study with variants stacked always, never, and as the planner chooses."""
    sides = ("always", "never", "auto")
    best, accuracy, plans = dict.fromkeys(sides, float("inf")), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        study.run(Path(tmp) / "warm", cache_dir=cache, progress=False, log=io.StringIO())  # decode the data, import
        for i in range(args.repeat):
            for side in sides:
                log = io.StringIO()
                start = time.perf_counter()
                results = study.run(Path(tmp) / f"{side}-{i}", cache_dir=cache, progress=False, force=True, log=log,
                                    stack_variants=side)
                seconds = time.perf_counter() - start
                best[side] = min(best[side], seconds)
                plans[side] = next(line for line in log.getvalue().splitlines() if ": training " in line)
                rows = results.epochs()
                final = rows[rows.epoch == rows.epoch.max()]
                accuracy[side] = final.groupby("variant").test_acc.mean()
                print(f"# repeat {i + 1}, stack variants {side}: {seconds:.1f} s", flush=True)
    print(f"{study.name}: {runs} runs x {args.epochs} epochs on {args.subset:,} images, best of {args.repeat}:")
    for side in sides:
        acc = ", ".join(f"{v} {100 * a:.2f}%" for v, a in accuracy[side].items())
        print(f"  {side:6} {best[side]:6.1f} s  mean test acc: {acc}")
        print(f"         {plans[side].split(': ', 1)[1]}")
    print(f"ratio: {min(best['always'], best['never']) / best['auto']:.2f}")


if __name__ == "__main__":
    main()
