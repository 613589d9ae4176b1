"""The plain-PyTorch baselines the benchmarks compare nnstudy against.

* the PyTorch "Training a classifier" tutorial, written plainly (its `Net`,
  its transform, loaders, training loop and test-set accuracy), reading the
  CIFAR-10 JPEG archive extracted to a folder as an ImageFolder tree;
* the leanest in-memory loop over the same model: the ceiling for one seed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import _common as C
from nnstudy.models.reference import TutorialNet

# Marker written once an archive is fully extracted into --extract-dir.
_EXTRACTED_MARKER = ".nnstudy-bench-extracted"


def add_extract_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extract-dir", default=None,
                   help="for the tutorial side: extract the archive here and reuse it on later runs "
                        "(default: a fresh temporary folder, removed at exit; extraction is never timed)")


Net = TutorialNet  # the tutorial's own class, kept in nnstudy.models.reference


@contextlib.contextmanager
def extracted_cifar(args):
    """Yield a folder with train/<class>/*.jpg and test/<class>/*.jpg (never timed).

    By default the archive goes to a fresh temporary folder, removed afterwards;
    with --extract-dir it is extracted there once and reused by later runs
    (extracting 60,000 small files takes 15-55 s on a slow disk).
    """
    archive = C.archive_path(args)
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
    C.sync(device)
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
    C.sync(device)
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
    C.sync(device)


def in_memory_train_epoch(data, batch_size: int, device: torch.device, seed: int = 0) -> float:
    """Seconds for one epoch of the leanest plain PyTorch loop over model A: a ceiling.

    The train set is normalised to float once and every batch is sliced from a
    pre-shuffled copy, so a step is only forward, backward and a fused SGD
    step (channels-last on CPU, no metrics, no host syncs). Whatever this loop
    reaches at a batch size is what PyTorch's own kernels allow on this
    machine; nnstudy's engine cannot beat it for one seed, only approach it.
    Threads: the count nnstudy would pick (or --threads), as on nnstudy's side.
    """
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    with C.nnstudy_threads(device, batch_size):
        torch.manual_seed(seed)
        net = Net().to(device, memory_format=layout)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, fused=True)
        criterion = nn.CrossEntropyLoss()
        order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))
        x = data.train_x[order].to(device).float().div_(127.5).sub_(1).contiguous(memory_format=layout)
        y = data.train_y[order].to(device)
        batches = list(zip(x.split(batch_size), y.split(batch_size)))
        C.sync(device)
        start = time.perf_counter()
        for inputs, labels in batches:
            optimizer.zero_grad(set_to_none=True)
            criterion(net(inputs), labels).backward()
            optimizer.step()
        C.sync(device)
        return time.perf_counter() - start
