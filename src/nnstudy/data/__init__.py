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
from nnstudy.registry import DATASETS

__all__ = ["ImageData", "load_dataset"]


def _needs_folder(name: str, data_dir) -> Path:
    if data_dir is None or str(data_dir) == "":
        raise UserError(f"dataset {name} needs a data folder: pass --data-dir DIR or set dataset.data_dir in the study file")
    return Path(data_dir).expanduser()


@DATASETS.register("digits")
def _digits(name, data_dir, cache_dir, download, cfg=None, source_dir=None):
    return sources.load_digits(cache_dir)


@DATASETS.register("imagefolder")
def _imagefolder(name, data_dir, cache_dir, download, cfg=None, source_dir=None):
    return imagefolder.load_imagefolder(_needs_folder(name, data_dir), cache_dir)


def _torchvision_files(name, data_dir, cache_dir, download, cfg=None, source_dir=None):
    data_dir = _needs_folder(name, data_dir)
    if not data_dir.is_dir() and not download:
        raise UserError(f"data folder {data_dir} for dataset {name} does not exist; pass --data-dir pointing at an existing folder")
    if name in sources.IDX_DATASETS:
        return sources.load_idx_dataset(name, data_dir, cache_dir, download)
    return sources.load_cifar(name, data_dir, cache_dir, download)


for _name in (*sources.IDX_DATASETS, *sources.CIFAR_DATASETS):
    DATASETS.register(_name, _torchvision_files)


def load_dataset(name: str, data_dir: str | Path | None, cache_dir: str | Path, download: bool = True,
                 cfg=None, source_dir: str | None = None) -> ImageData:
    """Load a dataset as uint8 tensors, decoding it only the first time.

    Parameters
    ----------
    name : str
        A registered dataset (`nnstudy.registry.DATASETS`): digits, mnist,
        fashion-mnist, cifar10, cifar100, imagefolder, torchvision, python.
    data_dir : str, Path or None
        Where the data lives (ignored for "digits"). For "imagefolder", a folder
        with train/<class>/ and test/<class>/ images or a .tar/.tar.gz/.tgz of one.
    cache_dir : str or Path
        Folder for the decoded-tensor cache; created if needed.
    download : bool, default=True
        Let torchvision download missing data into `data_dir`.
    cfg : DatasetConfig, optional
        The study's dataset table, for "torchvision" (`class`, `args`) and "python" (`factory`, `args`).
    source_dir : str, optional
        The study file's folder, where "module:function" references are looked up first.

    Returns
    -------
    ImageData

    Raises
    ------
    UserError
        Unknown name, missing data folder, missing/corrupt/inconsistent data.
    """
    if name not in DATASETS:
        raise UserError(DATASETS.unknown(name))
    return DATASETS.get(name)(name, data_dir, cache_dir, download, cfg, source_dir)
