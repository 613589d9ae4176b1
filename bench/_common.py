"""Pieces shared by the benchmark scripts in bench/.

* the command-line options every script takes, thread and device set-up;
* the PyTorch "Training a classifier" tutorial, written plainly (its `Net`,
  its transform, loaders, training loop and test-set accuracy), reading the
  CIFAR-10 JPEG archive extracted to a folder as an ImageFolder tree;
* nnstudy's side: the cifar10-cnn study's variant A as a RunConfig, the
  cached uint8 dataset and a GroupTrainer whose `_train_epoch` is timed;
* timing, table and `ratio:` printing helpers.

Ratios are always between two things measured in the same process on the
same machine; nothing is compared against hard-coded numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from nnstudy.models.reference import TutorialNet
from nnstudy.training.cpu_memory import keep_freed_memory
from nnstudy.training.threads import default_cpu_threads

ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
STUDY = "cifar10-cnn"
VARIANT = "A"
MODEL_A_PARAMS = 62_006
# Marker written once an archive is fully extracted into --extract-dir.
_EXTRACTED_MARKER = ".nnstudy-bench-extracted"
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


def add_extract_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extract-dir", default=None,
                   help="for the tutorial side: extract the archive here and reuse it on later runs "
                        "(default: a fresh temporary folder, removed at exit; extraction is never timed)")


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


def make_trainer(cfg, data, seeds: list[int], device: torch.device, vectorize: bool = True):
    from nnstudy.training.trainer import GroupTrainer, TrainOptions

    return GroupTrainer(cfg, data, seeds, TrainOptions(device=str(device), vectorize=vectorize, progress=False))


def time_train_epoch(trainer) -> float:
    """Seconds for one `GroupTrainer._train_epoch`: training only, no evaluation.

    `_train_epoch` ends with `.tolist()` on device tensors, so the time includes
    every queued device kernel.
    """
    threads = torch.get_num_threads()
    if not _THREADS_SET and trainer.device.type == "cpu":  # what `nnstudy run` would use
        torch.set_num_threads(default_cpu_threads(trainer.cfg.train.batch_size * len(trainer.seeds)))
    try:
        start = time.perf_counter()
        trainer._train_epoch(1, 1)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def in_memory_train_epoch(data, batch_size: int, device: torch.device, seed: int = 0) -> float:
    """Seconds for one epoch of the leanest plain PyTorch loop over model A: a ceiling.

    The train set is normalised to float once and every batch is sliced from a
    pre-shuffled copy, so a step is only forward, backward and a fused SGD
    step (channels-last on CPU, no metrics, no host syncs). Whatever this loop
    reaches at a batch size is what PyTorch's own kernels allow on this
    machine; nnstudy's engine cannot beat it for one seed, only approach it.
    Threads: the count nnstudy would pick (or --threads), as on nnstudy's side.
    """
    threads = torch.get_num_threads()
    if not _THREADS_SET and device.type == "cpu":
        torch.set_num_threads(default_cpu_threads(batch_size))
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    try:
        torch.manual_seed(seed)
        net = Net().to(device, memory_format=layout)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, fused=True)
        criterion = nn.CrossEntropyLoss()
        order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))
        x = data.train_x[order].to(device).float().div_(127.5).sub_(1).contiguous(memory_format=layout)
        y = data.train_y[order].to(device)
        batches = list(zip(x.split(batch_size), y.split(batch_size)))
        sync(device)
        start = time.perf_counter()
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            criterion(net(inputs), labels).backward()
            optimizer.step()
        sync(device)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)


def warm_up_engine(cfg, data, device: torch.device, n_seeds: int = 1, images: int = 256) -> None:
    """A throwaway short epoch, so library start-up (oneDNN/cuDNN/vmap) is not timed."""
    small = limit_data(data, torch.arange(min(images, len(data.train_y))))
    time_train_epoch(make_trainer(cfg, small, list(range(n_seeds)), device))


# --- the tutorial's side ---------------------------------------------------------------------
Net = TutorialNet  # the tutorial's own class, kept in nnstudy.models.reference


@contextlib.contextmanager
def extracted_cifar(args):
    """Yield a folder with train/<class>/*.jpg and test/<class>/*.jpg (never timed).

    By default the archive goes to a fresh temporary folder, removed afterwards;
    with --extract-dir it is extracted there once and reused by later runs
    (extracting 60,000 small files takes 15-55 s on a slow disk).
    """
    archive = archive_path(args)
    if getattr(args, "extract_dir", None):
        root = Path(args.extract_dir).expanduser().resolve()
        if not (root / _EXTRACTED_MARKER).is_file():
            _extract(archive, root)
            (root / _EXTRACTED_MARKER).write_text(str(archive))
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="nnstudy-bench-cifar10-"))
    try:
        _extract(archive, root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _extract(archive: Path, root: Path) -> None:
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(root, filter="data")
    print(f"# extracted {archive.name} to {root} in {time.perf_counter() - start:.1f} s (not timed)")


def tutorial_datasets(root: Path):
    """The tutorial's datasets, as ImageFolder over the extracted train/ and test/."""
    import torchvision
    import torchvision.transforms as transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    trainset = torchvision.datasets.ImageFolder(str(root / "train"), transform=transform)
    testset = torchvision.datasets.ImageFolder(str(root / "test"), transform=transform)
    return trainset, testset


def check_same_order(trainset, testset, data) -> None:
    """ImageFolder and nnstudy must list the images in the same order (so --limit subsets match)."""
    ok = (trainset.classes == data.classes
          and torch.equal(torch.tensor(trainset.targets), data.train_y)
          and torch.equal(torch.tensor(testset.targets), data.test_y))
    if not ok:
        sys.exit("ImageFolder and nnstudy list the CIFAR-10 images differently; the comparison would be unfair")


def tutorial_loader(dataset, batch_size: int, shuffle: bool, indices: torch.Tensor | None = None):
    from torch.utils.data import DataLoader, Subset

    if indices is not None:
        dataset = Subset(dataset, indices.tolist())
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=2)


def tutorial_optimizer(net):
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    return criterion, optimizer


def tutorial_train_epoch(net, trainloader, criterion, optimizer, device: torch.device, epoch: int = 0,
                         max_images: int | None = None, log=None) -> tuple[float, int]:
    """One epoch of the tutorial's loop; returns (seconds, images trained on).

    The time runs from creating the loader's iterator (so it includes the two
    worker processes starting, as every epoch of the tutorial does) to the
    last optimiser step. `max_images` stops early, for quick checks.
    """
    sync(device)
    start = time.perf_counter()
    images = 0
    running_loss = 0.0
    for i, data in enumerate(trainloader, 0):
        # get the inputs; data is a list of [inputs, labels]
        inputs, labels = data[0].to(device), data[1].to(device)

        # zero the parameter gradients
        optimizer.zero_grad()

        # forward + backward + optimize
        outputs = net(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()

        # print statistics
        running_loss += loss.item()
        if i % 2000 == 1999:  # print every 2000 mini-batches
            if log is not None:
                log(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}")
            running_loss = 0.0
        images += labels.shape[0]
        if max_images is not None and images >= max_images:
            break
    sync(device)
    return time.perf_counter() - start, images


@torch.no_grad()
def tutorial_test_accuracy(net, testloader, device: torch.device) -> float:
    """The tutorial's test loop: argmax over the outputs of every test image."""
    correct = 0
    total = 0
    # since we're not training, we don't need to calculate the gradients for our outputs
    for data in testloader:
        images, labels = data[0].to(device), data[1].to(device)
        # calculate outputs by running images through the network
        outputs = net(images)
        # the class with the highest energy is what we choose as prediction
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
    return correct / total


def warm_up_tutorial(device: torch.device, batch_size: int, steps: int = 20) -> None:
    """A few steps of a throwaway Net on random tensors, so library start-up is not timed."""
    net = Net().to(device)
    criterion, optimizer = tutorial_optimizer(net)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    for _ in range(steps):
        optimizer.zero_grad()
        criterion(net(x), y).backward()
        optimizer.step()
    sync(device)


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
