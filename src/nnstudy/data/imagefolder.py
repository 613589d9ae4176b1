"""Image-folder datasets: `train/<class>/*` and `test/<class>/*`, as a folder or a tar archive."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
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
    A folder without train/ that holds one archive stands for that archive, so one data folder can serve
    studies of several datasets (MNIST's files beside a CIFAR-10 archive, as a suite runs them).
    """
    data_dir = _archive_inside(data_dir)
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


def _archive_inside(data_dir: Path) -> Path:
    """`data_dir`, or the one archive inside it when it is a folder without train/ (several: a one-line error)."""
    if not data_dir.is_dir() or (data_dir / SPLITS[0]).is_dir():
        return data_dir
    archives = sorted(p for p in data_dir.iterdir() if is_archive(p))
    if len(archives) > 1:
        raise UserError(f"imagefolder data {data_dir} has no train/ folder and holds {len(archives)} archives "
                        f"({', '.join(p.name for p in archives)}); pass --data-dir pointing at the one to use")
    return archives[0] if archives else data_dir


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


# Images sit at most at wrapper/split/class/image: deeper folders are listed
# (so a misplaced one gets a clear error) but not walked into.
_MAX_DEPTH = 4


def _walk(top: Path):
    """Files (rel -> disk path), folders and (rel, size, mtime) stats under `top`.

    Symlinks are followed, but one that leads back to a folder it sits in, or
    that cannot be followed at all, is refused with its path.
    """
    files, dirs, stats = {}, set(), []
    top_stat = os.stat(top)
    stack = [("", ((top_stat.st_dev, top_stat.st_ino),))]  # folder, identities of it and its parents
    while stack:
        rel_dir, parents = stack.pop()
        folder = top / rel_dir if rel_dir else top
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            raise UserError(f"cannot read imagefolder folder {folder}: {exc.strerror or exc}; check its permissions") from exc
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = _stat(entry)
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in parents:
                    raise UserError(f"imagefolder data {entry.path} leads back to {os.path.realpath(entry.path)}, a folder it is "
                                    f"inside (a symlink loop); remove the link or point it at a folder of images")
                dirs.add(rel)
                if rel.count("/") < _MAX_DEPTH - 1:
                    stack.append((rel, (*parents, (st.st_dev, st.st_ino))))
            else:
                files[rel] = entry.path
                stats.append(f"{rel}|{st.st_size}|{st.st_mtime_ns}")
    return files, dirs, sorted(stats)


def _stat(entry: os.DirEntry) -> os.stat_result:
    """The entry's stat, following symlinks; a UserError naming it if that fails."""
    try:
        return entry.stat()
    except OSError as exc:
        if not entry.is_symlink():
            raise UserError(f"cannot read imagefolder file {entry.path}: {exc.strerror or exc}; check its permissions") from exc
        if exc.errno == errno.ELOOP:
            why = "it is part of a symlink loop"
        elif exc.errno == errno.ENOENT:
            why = f"its target {os.readlink(entry.path)!r} is missing"
        else:
            why = exc.strerror or str(exc)
        raise UserError(f"imagefolder data {entry.path} is a symlink that cannot be followed ({why}); "
                        f"remove it or point it at an image") from exc


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
    _check_pixels(_header_size(raw, tree.show(path)), tree.show(path))
    try:
        from torchvision.io import ImageReadMode, decode_image

        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        # torchvision's decoders are several times faster than PIL's on small images.
        im = decode_image(data, mode=ImageReadMode.RGB if rgb else ImageReadMode.UNCHANGED)
        _check_pixels((im.shape[-1], im.shape[-2]), tree.show(path))  # formats whose header PIL cannot read
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


def _check_pixels(size, shown: str) -> None:
    """Refuse an image over PIL's pixel limit; PIL only warns up to twice the limit, this refuses at once."""
    from PIL import Image

    if size is not None and Image.MAX_IMAGE_PIXELS and size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
        raise _too_large(shown, f"is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels")


def _too_large(shown: str, what: str) -> UserError:
    from PIL import Image

    return UserError(f"imagefolder file {shown} {what}, over PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                     f"(PIL.Image.MAX_IMAGE_PIXELS); an image this large is not a training image (it may be a "
                     f"decompression bomb): resize or remove it")


def _header_size(raw: bytes, shown: str) -> tuple[int, int] | None:
    """(width, height) from the image's header, before decoding; None if unknown."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR":
        return struct.unpack(">II", raw[16:24])
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    # Other formats: PIL reads the header only (about 40 us, too slow for every JPEG).
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as img:
                return img.size
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            pixels = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_large(shown, f"has {int(pixels[1]):,} pixels" if pixels else "has too many pixels") from None
        except Exception:
            return None  # not an image PIL knows: the decoders say what is wrong


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (SOFn marker); None if none is found."""
    i = 2
    while i + 9 <= len(raw) and raw[i] == 0xFF:
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", raw[i + 5:i + 9])
            return width, height
        else:
            i += 2 + int.from_bytes(raw[i + 2:i + 4], "big")
    return None
