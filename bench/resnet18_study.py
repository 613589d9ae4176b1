"""torchvision's resnet18 against the same net without BatchNorm, on a CIFAR-10 subset: seeds stacked vs one at a time.

The study issue 10 asks for, run end to end through the Python API (pre-flight
checks, training, store, report) twice from scratch: once with the seeds of
each variant stacked through torch.func, once with --no-vectorize. Both give
the same numbers (checked here); the ratio is the wall time saved by stacking.

    python bench/resnet18_study.py --data-dir ../shared/data                 # 1,000 train / 500 test images
    python bench/resnet18_study.py --data-dir ../shared/data --subset 5000 --epochs 2

Prints `ratio:` (one at a time / stacked) last.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import nnstudy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--subset", type=int, default=1000)
    p.add_argument("--test-subset", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    study = nnstudy.load_study({
        "name": "resnet18-bn", "seeds": list(range(args.seeds)),
        "dataset": {"name": "imagefolder", "data_dir": str(Path(args.data_dir) / "cifar10-jpeg.tar.gz"),
                    "subset": args.subset, "test_subset": args.test_subset, "mean": [0.5] * 3, "std": [0.5] * 3},
        "model": {"kind": "torchvision", "name": "resnet18"},
        "train": {"lr": 0.01, "momentum": 0.9, "batch_size": args.batch_size, "epochs": args.epochs},
        "variants": {"bn": {}, "no-bn": {"model": {"norm": "none"}}},
    })
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        from nnstudy.data.study_data import load_study_data

        load_study_data(study.config.variants["bn"], str(cache))  # decode the archive before timing
        seconds, runs = {}, {}
        for vectorize in (True, False):
            start = time.perf_counter()
            results = study.run(Path(tmp) / str(vectorize), cache_dir=cache, vectorize=vectorize, progress=False,
                                executor="local", log=io.StringIO())
            seconds[vectorize] = time.perf_counter() - start
            runs[vectorize] = results.runs().set_index(["variant", "seed"]).sort_index()
            print(f"# {'stacked' if vectorize else 'one at a time'}: {seconds[vectorize]:.1f} s "
                  f"(vectorized: {set(runs[vectorize]['vectorized'])})", flush=True)
    diff = (runs[True]["test_loss"] - runs[False]["test_loss"]).abs().max()
    print(runs[True][["status", "test_acc", "test_loss", "n_params"]].to_string())
    print(f"largest test-loss difference stacked vs one at a time: {diff:.2e}")
    print(f"resnet18 vs no BatchNorm, {args.seeds} seeds, {args.subset:,} images, {args.epochs} epoch(s): "
          f"stacked {seconds[True]:.1f} s, one at a time {seconds[False]:.1f} s")
    print(f"ratio: {seconds[False] / seconds[True]:.2f}")


if __name__ == "__main__":
    main()
