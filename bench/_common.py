"""Pieces shared by the benchmark scripts in bench/.

* the command-line options every script takes, thread and device set-up;
* nnstudy's side: the cifar10-cnn study's variant A as a RunConfig, the
  cached uint8 dataset and a GroupTrainer whose `train_epoch` is timed;
* timing, table and `ratio:` printing helpers.

The plain-PyTorch baselines (the tutorial, the in-memory ceiling) are in
_tutorial.py.

Ratios are always between two things measured in the same process on the
same machine; nothing is compared against hard-coded numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from nnstudy.training.cpu_memory import keep_freed_memory
from nnstudy.training.threads import default_cpu_threads

ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
STUDY = "cifar10-cnn"
VARIANT = "A"
MODEL_A_PARAMS = 62_006
_THREADS_SET = False  # --threads given: both sides use it


# --- command line ------------------------------------------------------------------------
def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def base_parser(description: str, limit_help: str, limit_default: int | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data",
                   help=f"folder holding {ARCHIVE_NAME} (relative to the current directory)")
    p.add_argument("--cache-dir", default=os.environ.get("NNSTUDY_CACHE") or "~/.cache/nnstudy",
                   help="nnstudy's decoded-tensor cache (the archive is decoded once, then read from here)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for both sides (default: the tutorial gets torch's default, "
                        "all cores; nnstudy gets the count it picks for a run, see nnstudy/training/threads.py)")
    p.add_argument("--limit", type=int, default=limit_default, help=limit_help)
    return p


def add_repeat(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--repeat", type=int, default=default,
                   help="measure each side this many times, interleaved, and keep each side's fastest "
                        "(on a shared or virtual machine the slower repeats measure interference, not the code)")


def setup(args) -> torch.device:
    """Apply --threads, resolve --device and print what the run is measured on."""
    global _THREADS_SET
    if args.threads is not None and args.threads < 1:
        sys.exit("--threads must be >= 1")
    if args.limit is not None and args.limit < 1:
        sys.exit("--limit must be >= 1")
    if getattr(args, "repeat", 1) < 1:
        sys.exit("--repeat must be >= 1")
    keep_freed_memory()  # for both sides, as every CPU job of `nnstudy run` does (nnstudy/training/cpu_memory.py)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        _THREADS_SET = True
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: CUDA is not available here")
    print(f"# {Path(sys.argv[0]).name}  torch {torch.__version__}  device {describe_device(device)}  "
          f"threads {torch.get_num_threads()}/{all_cores()} cores  load average {_loadavg()}")
    if args.limit is not None:
        print(f"# --limit {args.limit}: a quick check, not the full measurement")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"cpu ({name})"


def _loadavg() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def finish(ratio: float) -> None:
    """The last lines of every script: the load (noise hint) and the headline ratio."""
    print(f"# load average at the end {_loadavg()} (timings are only comparable on a quiet machine)")
    print(f"ratio: {ratio:.4g}")


# --- timing and tables ---------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> None:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def _fmt(c) -> str:
    if isinstance(c, float):
        if math.isnan(c) or math.isinf(c):
            return str(c)
        if abs(c) >= 100:
            return f"{c:,.0f}"
        if abs(c) >= 10:
            return f"{c:.1f}"
        return f"{c:.3g}" if abs(c) < 1 else f"{c:.2f}"
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    return str(c)


# --- nnstudy's side --------------------------------------------------------------------------
def archive_path(args) -> Path:
    path = Path(args.data_dir).expanduser().resolve() / ARCHIVE_NAME
    if not path.is_file():
        sys.exit(f"{path} not found: pass --data-dir pointing at the folder that holds {ARCHIVE_NAME}")
    return path


def load_cifar(args):
    """CIFAR-10 as nnstudy's ImageData (uint8), decoded once into --cache-dir."""
    from nnstudy.data import load_dataset

    start = time.perf_counter()
    data = load_dataset("imagefolder", archive_path(args), Path(args.cache_dir).expanduser())
    print(f"# dataset: {len(data.train_y):,} train + {len(data.test_y):,} test images {tuple(data.train_x.shape[1:])}, "
          f"loaded in {time.perf_counter() - start:.1f} s (not timed)")
    return data


def run_config(args, batch_size: int | None = None, epochs: int | None = None):
    """The RunConfig of model A from the built-in cifar10-cnn study, optionally re-batched."""
    from nnstudy.config.load import load_study
    from nnstudy.config.schema import RunConfig

    cfg = load_study(STUDY, {"data_dir": str(archive_path(args))}).variants[VARIANT]
    raw = cfg.model_dump()
    if batch_size is not None:
        raw["train"]["batch_size"] = batch_size
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    return RunConfig.model_validate(raw)  # re-validated, so a bad override fails loudly


def subset_indices(total: int, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """A fixed random subset of n of `total` items (ascending), or None for all.

    Used on both sides, so with --limit the tutorial and nnstudy train on the
    same images (both list a split's images in sorted class/file order).
    """
    if n is None or n >= total:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def limit_data(data, train_idx: torch.Tensor | None = None, test_idx: torch.Tensor | None = None):
    """`data` restricted to the given train/test indices (None keeps a split whole)."""
    out = replace(data)
    if train_idx is not None:
        out.train_x, out.train_y = data.train_x[train_idx].contiguous(), data.train_y[train_idx]
    if test_idx is not None:
        out.test_x, out.test_y = data.test_x[test_idx].contiguous(), data.test_y[test_idx]
    return out


def make_trainer(cfg, data, seeds: list[int], device: torch.device, vectorize: bool = True, probes: bool = False):
    from nnstudy.training.trainer import GroupTrainer, TrainOptions

    return GroupTrainer(cfg, data, seeds, TrainOptions(device=str(device), vectorize=vectorize, progress=False,
                                                       probes=probes))


@contextlib.contextmanager
def nnstudy_threads(device: torch.device, images_per_step: int):
    """The intra-op threads `nnstudy run` would use for this step size (unless --threads was given)."""
    threads = torch.get_num_threads()
    if not _THREADS_SET and device.type == "cpu":
        torch.set_num_threads(default_cpu_threads(images_per_step))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_train_epoch(trainer) -> float:
    """Seconds for one `GroupTrainer.train_epoch`: training only, no evaluation.

    `train_epoch` ends with `.tolist()` on device tensors, so the time includes
    every queued device kernel.
    """
    with nnstudy_threads(trainer.device, trainer.cfg.train.batch_size * len(trainer.seeds)):
        start = time.perf_counter()
        trainer.train_epoch(1, 1)
        return time.perf_counter() - start


def warm_up_engine(cfg, data, device: torch.device, n_seeds: int = 1, images: int = 256) -> None:
    """A throwaway short epoch, so library start-up (oneDNN/cuDNN/vmap) is not timed."""
    small = limit_data(data, torch.arange(min(images, len(data.train_y))))
    time_train_epoch(make_trainer(cfg, small, list(range(n_seeds)), device))


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
