"""Image-folder datasets: `train/<class>/*` and `test/<class>/*`, as a folder or a tar archive."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch

from nnstudy.data.archive import is_archive, read_archive
from nnstudy.data.cache import build_cached, source_key
from nnstudy.data.imagedata import ImageData
from nnstudy.errors import UserError

SPLITS = ("train", "test")


def load_imagefolder(data_dir: Path, cache_dir: str | os.PathLike) -> ImageData:
    """Load an image folder (or .tar/.tar.gz/.tgz of one), decoding it once.

    Classes are the sorted folder names under train/; test/ must have the same
    ones. Every image must decode and all images must share one size. If all
    images are greyscale the tensors have one channel, otherwise three (RGB).
    Files and folders whose names start with "." (.DS_Store...) are ignored.
    """
    if is_archive(data_dir):
        key = source_key("imagefolder", [data_dir])

        def build():
            tree = _Tree(*read_archive(data_dir), show=lambda rel: f"{data_dir}:{rel}" if rel else str(data_dir))
            return (*_decode_tree(tree), f"image archive {data_dir}")

    elif data_dir.is_dir():
        files, dirs, stats = _walk(data_dir)
        # Every file's size and mtime goes into the key, so any added, removed
        # or replaced image triggers a rebuild (about 1 s for 60,000 files).
        key = source_key("imagefolder", [str(data_dir.resolve()), *stats])

        def build():
            tree = _Tree(files, dirs, show=lambda rel: str(data_dir / rel))
            return (*_decode_tree(tree), f"image folder {data_dir}")

    elif data_dir.exists():
        raise UserError(f"imagefolder data {data_dir} is neither a folder nor a .tar/.tar.gz/.tgz archive; "
                        f"pass --data-dir pointing at a folder with train/ and test/ or an archive of one")
    else:
        raise UserError(f"imagefolder data {data_dir} does not exist; pass --data-dir pointing at a folder with train/<class>/ and test/<class>/ images")
    return build_cached("imagefolder", key, cache_dir, build)


class _Tree:
    """Read-only view of a folder tree, from disk or from an archive in memory.

    Paths are relative POSIX strings ("" is the top); `files` maps each file
    to its bytes or to the disk path to read them from.
    """

    def __init__(self, files: dict[str, bytes | str], dirs: set[str], show):
        self.files, self.dirs, self.show = files, dirs, show
        self._children: dict[str, list[str]] = {}
        for rel in sorted([*files, *dirs]):
            parent, _, _ = rel.rpartition("/")
            self._children.setdefault(parent, []).append(rel)

    def children(self, rel: str) -> list[str]:
        """Paths directly inside folder `rel`, sorted, hidden names left out."""
        return [c for c in self._children.get(rel, []) if not c.rpartition("/")[2].startswith(".")]

    def read(self, rel: str) -> bytes:
        data = self.files[rel]
        if isinstance(data, bytes):
            return data
        try:
            return Path(data).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read imagefolder file {self.show(rel)}: {exc.strerror or exc}; check its permissions") from exc


def _walk(top: Path):
    """Files (rel -> disk path), folders and (rel, size, mtime) stats under `top`."""
    files, dirs, stats = {}, set(), []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(top / rel_dir if rel_dir else top) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir():
                    dirs.add(rel)
                    stack.append(rel)
                else:
                    st = entry.stat()
                    files[rel] = entry.path
                    stats.append(f"{rel}|{st.st_size}|{st.st_mtime_ns}")
    return files, dirs, sorted(stats)


def _find_root(tree: _Tree) -> str:
    """The folder holding train/ and test/: the top, or its single subfolder."""
    candidates = [""]
    subdirs = [c for c in tree.children("") if c in tree.dirs]
    if len(subdirs) == 1:
        candidates.append(subdirs[0])  # archives often wrap everything in one folder
    for root in candidates:
        split_dirs = [_join(root, s) for s in SPLITS]
        if any(d in tree.dirs for d in split_dirs):
            for d in split_dirs:
                if d not in tree.dirs:
                    raise UserError(f"imagefolder data {tree.show(d)} is missing; put the images in train/<class>/ and test/<class>/ folders")
            return root
    raise UserError(f"imagefolder data {tree.show('')} has no train/ and test/ folders (looked in it and in its single subfolder); "
                    f"put the images in train/<class>/ and test/<class>/ folders")


def _join(root: str, name: str) -> str:
    return f"{root}/{name}" if root else name


def _decode_tree(tree: _Tree):
    """Decode train/ and test/ into (classes, (train_x, train_y, test_x, test_y))."""
    root = _find_root(tree)
    listing = {split: _list_split(tree, _join(root, split)) for split in SPLITS}
    classes = sorted(listing["train"])
    if sorted(listing["test"]) != classes:
        only_train = sorted(set(classes) - set(listing["test"]))
        only_test = sorted(set(listing["test"]) - set(classes))
        raise UserError(f"imagefolder data {tree.show(_join(root, 'test'))} has different class folders from {tree.show(_join(root, 'train'))} "
                        f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'}); make the two sets of class folders match")
    files = {s: [(f, i) for i, c in enumerate(classes) for f in listing[s][c]] for s in SPLITS}
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders in favour of TorchCodec;
        # they still work and are the fastest option installed.
        warnings.simplefilter("ignore", DeprecationWarning)
        images = {s: [_decode(tree, f) for f, _ in files[s]] for s in SPLITS}

    # One channel only if every image in both splits is greyscale.
    channels = 1 if all(im.shape[0] == 1 for s in SPLITS for im in images[s]) else 3
    first, size = files["train"][0][0], tuple(images["train"][0].shape[1:])
    tensors = []
    for s in SPLITS:
        for k, ((path, _), im) in enumerate(zip(files[s], images[s])):
            if tuple(im.shape[1:]) != size:
                raise UserError(f"imagefolder image {tree.show(path)} is {im.shape[2]}x{im.shape[1]} but {tree.show(first)} is "
                                f"{size[1]}x{size[0]} (width x height); all images must have one size, resize them first")
            if im.shape[0] != channels:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    images[s][k] = _decode(tree, path, rgb=True)
        tensors += [torch.stack(images[s]), torch.tensor([y for _, y in files[s]], dtype=torch.int64)]
        images[s] = None  # free the per-image tensors early
    return classes, tuple(tensors)


def _list_split(tree: _Tree, split: str) -> dict[str, list[str]]:
    """Map class name -> sorted image paths of one split."""
    out = {}
    for entry in tree.children(split):
        if entry not in tree.dirs:
            raise UserError(f"imagefolder data {tree.show(entry)} is a file, but {tree.show(split)} must hold only class folders; "
                            f"move it into a class folder or remove it")
        images = tree.children(entry)
        for p in images:
            if p in tree.dirs:
                raise UserError(f"imagefolder data {tree.show(p)} is a folder inside a class folder; class folders must hold only images, move its contents up")
        if not images:
            raise UserError(f"imagefolder class folder {tree.show(entry)} is empty; add images to it or remove it")
        out[entry.rpartition("/")[2]] = images
    if not out:
        raise UserError(f"imagefolder data {tree.show(split)} has no class folders; put the images in {tree.show(split)}/<class>/")
    return out


def _decode(tree: _Tree, path: str, rgb: bool = False) -> torch.Tensor:
    """Decode one image to uint8 [C, H, W] (C = 1 or 3, or 3 when `rgb`)."""
    raw = tree.read(path)
    try:
        from torchvision.io import ImageReadMode, decode_image

        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        # torchvision's decoders are several times faster than PIL's on small images.
        im = decode_image(data, mode=ImageReadMode.RGB if rgb else ImageReadMode.UNCHANGED)
        if im.dtype != torch.uint8:  # 16-bit PNG: keep the high byte
            im = (im.to(torch.int32) >> 8).to(torch.uint8)
        if im.shape[0] in (1, 3):
            return im
        if not rgb:  # grey+alpha or RGBA: drop alpha through an RGB decode
            return _decode(tree, path, rgb=True)
    except (ImportError, RuntimeError):
        pass  # formats torchvision lacks (BMP, TIFF...), a corrupt file, or no decoders at all: try PIL
    return _decode_pil(raw, tree.show(path), rgb)


def _decode_pil(data: bytes, shown: str, rgb: bool) -> torch.Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if img.mode in ("1", "L") and not rgb else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"imagefolder file {shown} is not a readable image ({' '.join(str(exc).split())[:120]}); "
                        f"remove or replace it") from exc
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1).contiguous()
