"""A user's data: any torchvision dataset class, or a Python factory; decoded once into the uint8 cache.

- `name = "torchvision"`, `class = "SVHN"`: torchvision.datasets.SVHN under the data folder
  (`args` go to the class; train/test come from its `train=` or `split=` argument).
- `name = "python"`, `factory = "module:function"`: `function(**args)` returns
  `(train_x, train_y, test_x, test_y)` tensors (uint8, or floats in [0, 1]; [N, C, H, W] or
  [N, H, W]) or `(train_dataset, test_dataset)` yielding (image, label); with a `classes` attribute
  or a dict holding `classes`, those name the labels.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
from pathlib import Path

import numpy as np
import torch

from nnstudy.data.cache import build_cached, source_key
from nnstudy.errors import UserError
from nnstudy.registry import DATASETS, import_reference

_SPLITS = {"train": (True, "train"), "test": (False, "test")}


@DATASETS.register("torchvision")
def load_torchvision(name, data_dir, cache_dir, download, cfg, source_dir=None):
    import torchvision
    import torchvision.datasets as tvd

    cls_name = cfg.class_
    cls = getattr(tvd, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.utils.data.Dataset)):
        known = [n for n in dir(tvd) if n[:1].isupper()]
        close = difflib.get_close_matches(cls_name, known, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"dataset.class = {cls_name!r} is not a torchvision dataset; {hint}see torchvision.datasets")
    if data_dir is None:
        raise UserError(f"dataset torchvision {cls_name} needs a root folder: pass --data-dir DIR or set dataset.data_dir")
    root = Path(data_dir).expanduser()
    params = inspect.signature(cls).parameters

    def split(which: str):
        kwargs = dict(cfg.args)
        if "train" in params:
            kwargs["train"] = _SPLITS[which][0]
        elif "split" in params:
            kwargs["split"] = _SPLITS[which][1]
        if "download" in params:
            kwargs["download"] = download
        try:
            return cls(root=str(root), **kwargs)
        except Exception as exc:
            raise UserError(f"torchvision {cls_name} in {root}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}; "
                            "check --data-dir and dataset.args (with network access it downloads)") from None

    def build():
        train, test = split("train"), split("test")
        classes = _classes(train)
        return classes, (*_decode(train, cls_name), *_decode(test, cls_name)), f"torchvision {cls_name} in {root}"

    listing = sorted(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                     for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    key = source_key(f"tv-{cls_name}", [f"torchvision={torchvision.__version__}", json.dumps(cfg.args, sort_keys=True),
                                        str(root.resolve()), *listing])
    return build_cached(f"tv-{cls_name}", key, cache_dir, build)


@DATASETS.register("python")
def load_python(name, data_dir, cache_dir, download, cfg, source_dir=None):
    factory = import_reference(cfg.factory, "dataset.factory", source_dir)
    try:
        code = Path(inspect.getsourcefile(factory) or "")
        code_id = f"{code}:{code.stat().st_size}:{code.stat().st_mtime_ns}" if code.is_file() else cfg.factory
    except TypeError:  # a builtin or C function: no file to watch
        code_id = cfg.factory
    # The cache follows the factory's file, its arguments and the data folder; edit any and it rebuilds.
    parts = [cfg.factory, code_id, json.dumps(cfg.args, sort_keys=True, default=str)]
    if data_dir:
        parts.append(os.fspath(Path(data_dir).expanduser().resolve()))

    def build():
        try:
            out = factory(**cfg.args)
        except Exception as exc:
            raise UserError(f"dataset.factory {cfg.factory} raised {type(exc).__name__}: {exc}") from None
        classes = out.get("classes") if isinstance(out, dict) else getattr(out, "classes", None)
        if isinstance(out, dict):
            out = tuple(out[k] for k in ("train_x", "train_y", "test_x", "test_y") if k in out) or \
                  tuple(out[k] for k in ("train", "test") if k in out)
        if isinstance(out, (tuple, list)) and len(out) == 4:
            tensors = (_images(out[0], cfg.factory, "train_x"), _labels(out[1], cfg.factory, "train_y"),
                       _images(out[2], cfg.factory, "test_x"), _labels(out[3], cfg.factory, "test_y"))
        elif isinstance(out, (tuple, list)) and len(out) == 2:
            classes = classes or _classes(out[0])
            tensors = (*_decode(out[0], cfg.factory), *_decode(out[1], cfg.factory))
        else:
            raise UserError(f"dataset.factory {cfg.factory} returned {type(out).__name__}; return (train_x, train_y, "
                            "test_x, test_y) tensors or (train_dataset, test_dataset)")
        if classes is None:
            n = int(max(tensors[1].max(), tensors[3].max())) + 1
            classes = [str(c) for c in range(n)]
        return [str(c) for c in classes], tensors, f"python factory {cfg.factory}"

    return build_cached("python", source_key("python", parts), cache_dir, build)


def _classes(ds) -> list[str] | None:
    classes = getattr(ds, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def _decode(ds, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset of (image, label) pairs -> uint8 [N, C, H, W] and int64 [N], in its own order."""
    images, labels = [], []
    for i in range(len(ds)):
        image, label = ds[i]
        images.append(_image(image, what))
        labels.append(int(label))
    if not images:
        raise UserError(f"{what}: the dataset is empty")
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise UserError(f"{what}: images have different shapes {sorted(shapes)[:3]}; resize them to one shape "
                        "(e.g. a transform in dataset.args)")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _image(image, what: str) -> torch.Tensor:
    if hasattr(image, "convert"):  # a PIL image
        array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        t = torch.from_numpy(array.copy())
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return _images(torch.as_tensor(np.asarray(image)).unsqueeze(0), what, "image")[0]


def _images(x, what: str, field: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise UserError(f"{what}: {field} must be [N, C, H, W] or [N, H, W], got shape {list(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.is_floating_point() and x.numel() and 0 <= float(x.min()) and float(x.max()) <= 1:
        return (x * 255).round().to(torch.uint8).contiguous()
    raise UserError(f"{what}: {field} must be uint8 or floats in [0, 1], got {x.dtype}"
                    + (f" from {float(x.min()):g} to {float(x.max()):g}" if x.numel() else ""))


def _labels(y, what: str, field: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(y)) if not torch.is_tensor(y) else y
    if y.dim() != 1 or y.is_floating_point():
        raise UserError(f"{what}: {field} must be integer class indices of shape [N], got {y.dtype} {list(y.shape)}")
    return y.to(torch.int64).contiguous()
