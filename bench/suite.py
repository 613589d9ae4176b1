"""The coursework suite (without its 1000-epoch study) against its studies run one after another, same run.

Both sides run the `nnstudy` command on copies of the built-in studies cut to a
subset of their data (`--subset` training and `--test-subset` test images),
each into its own fresh output folder, with the decoded data cached first so
neither side pays for decoding. Then the stored numbers of the two sides are
compared run by run (a suite must give each study the numbers of the study run
alone). Prints each side's wall time, the workers' busy seconds against their span (what a
suite can at most save is the idle rest), and `ratio:` last (suite time over
sequential time; below 1: the suite's one queue saved time).

    nice -n 10 python bench/suite.py --subset 1000 --test-subset 500 [--workers 2] [--seeds 0,1,2]
    python bench/suite.py --subset 0 --test-subset 0 --workers 2     # full data, the built-in seeds
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnstudy.config import builtin_study_text, load_study
from nnstudy.config.suite import load_suite
from nnstudy.data.study_data import load_study_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data", help="MNIST's files and the CIFAR-10 archive side by side")
    p.add_argument("--subset", type=int, default=2000, help="training images of each study (0: all of them)")
    p.add_argument("--test-subset", type=int, default=1000, help="test images of each study (0: all of them)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--seeds", default=None, help="override every study's seeds, e.g. 0,1,2")
    p.add_argument("--cache-dir", default=os.environ.get("NNSTUDY_CACHE") or "~/.cache/nnstudy")
    p.add_argument("--keep", default=None, help="keep both output folders under this folder (default: a temp folder)")
    args = p.parse_args()

    names = load_suite("coursework").studies
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        files = [_subset_copy(name, root / "studies", args.subset, args.test_subset) for name in names]
        suite = root / "studies" / "coursework-subset.toml"
        suite.write_text('kind = "suite"\nname = "coursework-subset"\nreplication = true\nstudies = ['
                         + ", ".join(f'"{f.name}"' for f in files) + "]\n")
        common = ["--data-dir", args.data_dir, "--cache-dir", os.path.expanduser(args.cache_dir), "--quiet"]
        common += ["--workers", str(args.workers)] if args.workers else []
        common += ["--seeds", args.seeds] if args.seeds else []
        for f in files:  # decode once, outside the timings
            cfg = load_study(str(f), {"data_dir": args.data_dir})
            load_study_data(cfg.variants[cfg.baseline_name], os.path.expanduser(args.cache_dir))

        sequential = 0.0
        for f in files:
            seconds = _run([str(f), "--out", str(root / "sequential")] + common)
            print(f"{f.stem}: {seconds:.1f} s alone", flush=True)
            sequential += seconds
        suite_seconds = _run([str(suite), "--out", str(root / "suite")] + common)
        same = _stored(root / "sequential") == _stored(root / "suite")
        print(f"studies one after another: {sequential:.1f} s; the suite: {suite_seconds:.1f} s; "
              f"stored numbers {'identical' if same else 'DIFFERENT'} run by run")
        for side in ("sequential", "suite"):
            busy, span = _worker_seconds(root / side, side == "suite")
            print(f"{side}: workers busy {busy:.0f} s of {span:.0f} s x {args.workers or os.cpu_count()} workers "
                  "(training, from the stored runs' start and end)")
        print(f"ratio: {suite_seconds / sequential:.3f}")
        if not same:
            sys.exit(1)


def _subset_copy(name: str, folder: Path, subset: int, test_subset: int) -> Path:
    """The built-in study `name`, same name, cut to `subset` training and `test_subset` test images (0: not cut)."""
    text = builtin_study_text(name)
    if "\n[dataset]\n" not in text:
        raise SystemExit(f"{name}: no [dataset] table to cut")
    cut = "".join(f"{key} = {n}\n" for key, n in (("subset", subset), ("test_subset", test_subset)) if n)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text.replace("\n[dataset]\n", f"\n[dataset]\n{cut}", 1))
    return path


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nnstudy", "run", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nnstudy run {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _worker_seconds(out: Path, one_span: bool) -> tuple[float, float]:
    """Seconds the workers trained (each job from its runs' first start to their last end) and the span they had:
    each study's first start to last end, summed (`one_span`: one span over all). What the suite can save is the
    difference, less what the plan cannot fill."""
    with sqlite3.connect(out / "nnstudy.db") as conn:
        rows = conn.execute("SELECT study, started, ended, settings FROM runs").fetchall()
    jobs: dict[tuple, list] = {}
    for study, start, end, settings in rows:  # a job: one planned stack of a study, started together
        jobs.setdefault((study, json.loads(settings)["plan"], round(start)), []).append((start, end))
    busy = sum(max(e for _, e in ab) - min(s for s, _ in ab) for ab in jobs.values())
    spans = {}
    for study, start, end, _ in rows:
        first, last = spans.get(study, (start, end))
        spans[study] = (min(first, start), max(last, end))
    if one_span:
        return busy, max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
    return busy, sum(e - s for s, e in spans.values())


def _stored(out: Path) -> dict:
    with sqlite3.connect(out / "nnstudy.db") as conn:
        runs = conn.execute("SELECT id, study, variant, seed, config_hash FROM runs").fetchall()
        return {(s, v, seed, h): conn.execute("SELECT epoch, train_loss, train_acc, test_loss, test_acc FROM epochs "
                                              "WHERE run=? ORDER BY epoch", (rid,)).fetchall()
                for rid, s, v, seed, h in runs}


if __name__ == "__main__":
    main()
