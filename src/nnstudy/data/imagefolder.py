"""Image-folder datasets: `train/<class>/*` and `test/<class>/*`, as a folder or a tar archive."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import torch

from nnstudy.data.archive import extract_archive, is_archive
from nnstudy.data.cache import build_cached, source_key
from nnstudy.data.imagedata import ImageData
from nnstudy.errors import UserError

SPLITS = ("train", "test")


def load_imagefolder(data_dir: Path, cache_dir: str | os.PathLike) -> ImageData:
    """Load an image folder (or .tar/.tar.gz/.tgz of one), decoding it once.

    Classes are the sorted folder names under train/; test/ must have the same
    ones. Every image must decode and all images must share one size. If all
    images are greyscale the tensors have one channel, otherwise three (RGB).
    """
    if is_archive(data_dir):
        key = source_key("imagefolder", [data_dir])

        def build():
            # Extracted files are only needed while decoding; the tensor cache
            # is all that is kept.
            extracted = extract_archive(data_dir, Path(cache_dir) / f"imagefolder-{key}.extracted")
            try:
                # Name files as "<archive>:<member>", not by their temporary path.
                def show(p: Path) -> str:
                    rel = p.relative_to(extracted).as_posix()
                    return str(data_dir) if rel == "." else f"{data_dir}:{rel}"

                classes, tensors = _decode_tree(_find_root(extracted, show), show)
            finally:
                shutil.rmtree(extracted, ignore_errors=True)
            return classes, tensors, f"image archive {data_dir}"

    elif data_dir.is_dir():
        root = _find_root(data_dir, str)
        # Every file's size and mtime goes into the key, so any added, removed
        # or replaced image triggers a rebuild (os.scandir keeps this ~1 s for 60k files).
        key = source_key("imagefolder", [str(root)] + [f"{p}|{s}|{m}" for p, s, m in _stat_tree(root)])

        def build():
            classes, tensors = _decode_tree(root, str)
            return classes, tensors, f"image folder {root}"

    elif data_dir.exists():
        raise UserError(f"imagefolder data {data_dir} is neither a folder nor a .tar/.tar.gz/.tgz archive; "
                        f"pass --data-dir pointing at a folder with train/ and test/ or an archive of one")
    else:
        raise UserError(f"imagefolder data {data_dir} does not exist; pass --data-dir pointing at a folder with train/<class>/ and test/<class>/ images")
    return build_cached("imagefolder", key, cache_dir, build)


def _find_root(top: Path, show) -> Path:
    """The folder holding train/ and test/: `top` itself or its single subfolder."""
    candidates = [top]
    subdirs = [p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1:
        candidates.append(subdirs[0])  # archives often wrap everything in one folder
    for root in candidates:
        if any((root / s).is_dir() for s in SPLITS):
            for split in SPLITS:
                if not (root / split).is_dir():
                    raise UserError(f"imagefolder data {show(root / split)} is missing; "
                                    f"put the images in train/<class>/ and test/<class>/ folders")
            return root
    raise UserError(f"imagefolder data {show(top)} has no train/ and test/ folders (looked in {show(top)} and its single subfolder); "
                    f"put the images in train/<class>/ and test/<class>/ folders")


def _stat_tree(root: Path):
    out = []
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    st = entry.stat()
                    out.append((entry.path, st.st_size, st.st_mtime_ns))
    return sorted(out)


def _decode_tree(root: Path, show):
    """Decode train/ and test/ under `root` into (classes, (train_x, train_y, test_x, test_y)).

    `show(path)` gives the name of a file for error messages.
    """
    listing = {split: _list_split(root / split, show) for split in SPLITS}
    classes = sorted(listing["train"])
    if sorted(listing["test"]) != classes:
        only_train = sorted(set(classes) - set(listing["test"]))
        only_test = sorted(set(listing["test"]) - set(classes))
        raise UserError(f"imagefolder data {show(root / 'test')} has different class folders from {show(root / 'train')} "
                        f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'}); make the two sets of class folders match")
    files = {s: [(f, i) for i, c in enumerate(classes) for f in listing[s][c]] for s in SPLITS}
    images = {s: [_decode(f, show) for f, _ in files[s]] for s in SPLITS}

    # One channel only if every image in both splits is greyscale.
    channels = 1 if all(im.shape[0] == 1 for s in SPLITS for im in images[s]) else 3
    first = files["train"][0][0], tuple(images["train"][0].shape[1:])
    tensors = []
    for s in SPLITS:
        for k, ((path, _), im) in enumerate(zip(files[s], images[s])):
            if tuple(im.shape[1:]) != first[1]:
                raise UserError(f"image {show(path)} is {im.shape[2]}x{im.shape[1]} but {show(first[0])} is {first[1][1]}x{first[1][0]} (width x height); "
                                f"all images must have one size, resize them first")
            if im.shape[0] != channels:
                images[s][k] = _decode(path, show, rgb=True)
        tensors += [torch.stack(images[s]), torch.tensor([y for _, y in files[s]], dtype=torch.int64)]
        images[s] = None  # free the per-image tensors early
    return classes, tuple(tensors)


def _list_split(split_dir: Path, show) -> dict[str, list[Path]]:
    """Map class name -> sorted image paths; hidden files (.DS_Store...) are ignored."""
    out = {}
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise UserError(f"imagefolder data {show(entry)} is a file, but {show(split_dir)} must hold only class folders; move it into a class folder or remove it")
        out[entry.name] = sorted(p for p in entry.iterdir() if not p.name.startswith("."))
        for p in out[entry.name]:
            if not p.is_file():
                raise UserError(f"imagefolder data {show(p)} is not an image file; class folders must hold only images, remove it")
        if not out[entry.name]:
            raise UserError(f"imagefolder class folder {show(entry)} is empty; add images to it or remove it")
    if not out:
        raise UserError(f"imagefolder data {show(split_dir)} has no class folders; put images in {show(split_dir)}/<class>/")
    return out


def _decode(path: Path, show, rgb: bool = False) -> torch.Tensor:
    """Decode one image to uint8 [C, H, W] (C = 1 or 3, or 3 when `rgb`)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    data = read_file(str(path))
    try:
        # torchvision's decoders are several times faster than PIL's on small images.
        im = decode_image(data, mode=ImageReadMode.RGB if rgb else ImageReadMode.UNCHANGED)
        if im.dtype != torch.uint8:  # 16-bit PNG: keep the high byte
            im = (im.to(torch.int32) >> 8).to(torch.uint8)
        if im.shape[0] in (1, 3):
            return im
        if not rgb:  # grey+alpha or RGBA: drop alpha through an RGB decode
            return _decode(path, show, rgb=True)
    except RuntimeError:
        pass  # formats torchvision lacks (BMP, TIFF...) or a corrupt file: try PIL
    return _decode_pil(data.numpy().tobytes(), path, show, rgb)


def _decode_pil(data: bytes, path: Path, show, rgb: bool) -> torch.Tensor:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if img.mode in ("1", "L") and not rgb else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"imagefolder file {show(path)} is not a readable image ({' '.join(str(exc).split())[:120]}); "
                        f"remove or replace it") from exc
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1).contiguous()
