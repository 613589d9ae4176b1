"""What the mechanism probes cost a whole study: wall time with probes on against off.

Runs a built-in study end to end through the Python API (planning, training,
store, report with its figures), on a fixed subset of its training images,
--repeat times each way, interleaved; keeps each side's fastest. Both sides
train the same runs (--force), in fresh output folders, from the same warm
dataset cache.

    python bench/probes_overhead.py --data-dir ../shared/data              # mnist-init, 10,000 images
    python bench/probes_overhead.py --data-dir ../shared/data --study mnist-loss --subset 60000

Prints `ratio:` (probes on / probes off) last; the goal is at most 1.05.
On a shared 2-core machine two whole-study timings vary by more than 5%, so
`--breakdown` also times the probe work itself: each variant's seeds trained
in this process with the trainer's public steps (`train_epoch`, `evaluate`,
`probe`), the probe passes timed, and the report's Mechanisms section timed in
one more probes-on run, as a share of that run's wall time.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import nnstudy
from nnstudy.data.study_data import load_study_data
from nnstudy.registry import REPORT_SECTIONS
from nnstudy.training import GroupTrainer, TrainOptions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--study", default="mnist-init")
    p.add_argument("--subset", type=int, default=10_000, help="training images (the test set stays whole)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--executor", default="auto")
    p.add_argument("--breakdown", action="store_true", help="time the probe work inside one more in-process run")
    args = p.parse_args()

    config = nnstudy.load_study(args.study, data_dir=args.data_dir).config.model_dump(mode="json", by_alias=True)
    config.pop("base")
    for v in config["variants"].values():
        v["dataset"]["subset"] = args.subset
        v.pop("source_dir", None)
    study = nnstudy.load_study({**config, "variants": config["variants"],
                                **{k: config["variants"][config["baseline"] or next(iter(config["variants"]))][k]
                                   for k in ("dataset", "model", "train")}})
    runs = len(study.variants) * len(study.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        study.run(Path(tmp) / "warm", cache_dir=cache, progress=False, probes=False, executor=args.executor,
                  log=io.StringIO())  # decode the data once, import everything
        best = {True: float("inf"), False: float("inf")}
        for i in range(args.repeat):
            for probes in (False, True):
                start = time.perf_counter()
                study.run(Path(tmp) / f"{probes}-{i}", cache_dir=cache, progress=False, probes=probes,
                          executor=args.executor, force=True, log=io.StringIO())
                seconds = time.perf_counter() - start
                best[probes] = min(best[probes], seconds)
                print(f"# repeat {i + 1}: probes {'on ' if probes else 'off'} {seconds:.1f} s", flush=True)
        if args.breakdown:
            probe_s, wall = timed_probe_work(study, Path(tmp) / "breakdown", cache)
            print(f"probe work: {probe_s:.1f} s of a {wall:.1f} s study run in-process ({100 * probe_s / wall:.1f}%)")
    print(f"{args.study}: {runs} runs, {args.subset:,} training images, best of {args.repeat}: "
          f"probes off {best[False]:.1f} s, on {best[True]:.1f} s")
    print(f"ratio: {best[True] / best[False]:.3f}")


def timed_probe_work(study, out: Path, cache: Path) -> tuple[float, float]:
    """Seconds spent probing (training's probe passes + the Mechanisms section) and a probes-on run's wall time."""
    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    for cfg in study.config.variants.values():  # the probe passes, as `GroupTrainer.fit` makes them
        trainer = GroupTrainer(cfg, load_study_data(cfg, str(cache)), study.seeds,
                               TrainOptions(progress=False, probes=True))
        report = set(study.config.epochs_to_report(cfg))
        timed(trainer.probe)(0, shifts=False, extra={})
        for epoch in range(1, cfg.train.epochs + 1):
            trainer.train_epoch(epoch, cfg.train.epochs)
            trainer.evaluate()
            timed(trainer.probe)(epoch, shifts=epoch in report or epoch == cfg.train.epochs, extra={})
    entry = REPORT_SECTIONS.entry("mechanisms")
    REPORT_SECTIONS.register("mechanisms", timed(entry.build), **entry.meta)
    try:
        start = time.perf_counter()
        study.run(out, cache_dir=cache, progress=False, probes=True, executor="local", force=True, log=io.StringIO())
        return spent[0], time.perf_counter() - start
    finally:
        REPORT_SECTIONS.register("mechanisms", entry.build, **entry.meta)


if __name__ == "__main__":
    main()
