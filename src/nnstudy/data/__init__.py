"""Datasets decoded once into cached uint8 tensors.

>>> data = load_dataset("digits", data_dir=None, cache_dir="cache")   # doctest: +SKIP
>>> data.train_x.shape, data.train_x.dtype                            # doctest: +SKIP
(torch.Size([1437, 1, 8, 8]), torch.uint8)
"""

from __future__ import annotations

from pathlib import Path

from nnstudy.data import imagefolder, sources
from nnstudy.data.imagedata import ImageData
from nnstudy.errors import UserError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder")

__all__ = ["DATASETS", "ImageData", "load_dataset"]


def load_dataset(name: str, data_dir: str | Path | None, cache_dir: str | Path, download: bool = True) -> ImageData:
    """Load a dataset as uint8 tensors, decoding it only the first time.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data_dir : str, Path or None
        Where the data lives (ignored for "digits"). For "imagefolder", a folder
        with train/<class>/ and test/<class>/ images or a .tar/.tar.gz/.tgz of one.
    cache_dir : str or Path
        Folder for the decoded-tensor cache; created if needed.
    download : bool, default=True
        Let torchvision download mnist, fashion-mnist, cifar10 and cifar100
        into `data_dir` when they are missing.

    Returns
    -------
    ImageData

    Raises
    ------
    UserError
        Unknown name, missing data folder, missing/corrupt/inconsistent data.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; set dataset.name in the study file to one of: {', '.join(DATASETS)}")
    if name == "digits":
        return sources.load_digits(cache_dir)
    if data_dir is None or str(data_dir) == "":
        raise UserError(f"dataset {name} needs a data folder: pass --data-dir DIR or set dataset.data_dir in the study file")
    data_dir = Path(data_dir).expanduser()
    if name == "imagefolder":
        return imagefolder.load_imagefolder(data_dir, cache_dir)
    if not data_dir.is_dir() and not download:
        raise UserError(f"data folder {data_dir} for dataset {name} does not exist; pass --data-dir pointing at an existing folder")
    if name in sources.IDX_DATASETS:
        return sources.load_idx_dataset(name, data_dir, cache_dir, download)
    return sources.load_cifar(name, data_dir, cache_dir, download)
