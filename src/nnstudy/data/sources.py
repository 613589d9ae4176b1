"""Readers for the built-in datasets: scikit-learn digits, MNIST-style IDX files, CIFAR.

Each `load_*` function finds its source files, derives a cache key from them
and decodes them (only on a cache miss) into uint8 [N, C, H, W] tensors.
"""

from __future__ import annotations

import gzip
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from nnstudy.data.cache import build_cached, source_key
from nnstudy.data.imagedata import ImageData
from nnstudy.errors import UserError
from nnstudy.versions import installed_version

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

# study-file name -> (torchvision class name, folder torchvision downloads into)
IDX_DATASETS = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "FashionMNIST")}
CIFAR_DATASETS = {"cifar10": ("CIFAR10", "cifar-10-batches-py"), "cifar100": ("CIFAR100", "cifar-100-python")}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ----------------------------------------------------------------- digits

def load_digits(cache_dir: str | os.PathLike) -> ImageData:
    """scikit-learn's bundled 8x8 digits with a fixed 80/20 train/test split (scikit-learn imported only to build
    the cache: its version, part of the cache's key, comes from its package metadata)."""
    def build():
        import sklearn
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        # Pixel values are 0..16; scale to the full uint8 range like any image.
        x = torch.from_numpy(np.rint(bunch.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
        y = torch.from_numpy(bunch.target.astype(np.int64))
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
        n_test = round(len(y) * DIGITS_TEST_FRACTION)
        train, test = perm[:-n_test].sort().values, perm[-n_test:].sort().values
        source = (f"scikit-learn {sklearn.__version__} load_digits ({len(y)} images); fixed split: "
                  f"permutation with seed {DIGITS_SPLIT_SEED}, last {n_test} as test")
        return [str(d) for d in range(10)], (x[train], y[train], x[test], y[test]), source

    key = source_key("digits", [f"sklearn={installed_version('scikit-learn')}", f"split={DIGITS_SPLIT_SEED},{DIGITS_TEST_FRACTION}"])
    return build_cached("digits", key, cache_dir, build)


# ----------------------------------------------------------------- MNIST-style IDX

def load_idx_dataset(name: str, data_dir: Path, cache_dir: str | os.PathLike, download: bool) -> ImageData:
    """MNIST or Fashion-MNIST from the four IDX files (plain or .gz).

    The files may sit directly in `data_dir` or in `data_dir/<MNIST|FashionMNIST>/raw`
    (torchvision's layout). If none are found and `download` is true, torchvision
    downloads them into the latter.
    """
    import torchvision.datasets as tvd

    tv_name, folder = IDX_DATASETS[name]
    tv_class = getattr(tvd, tv_name)
    files = _find_idx_files(data_dir, folder)
    if files is None and download:
        try:
            with _remove_new_folders_on_failure(data_dir / folder / "raw"):
                tv_class(root=str(data_dir), train=True, download=True)
        except Exception as exc:  # network, permission and checksum errors alike
            raise _not_found(name, data_dir, data_dir / folder / "raw" / _IDX_FILES[0], f"download failed: {_short(exc)}", f"{folder}/raw/") from exc
        files = _find_idx_files(data_dir, folder)
    if files is None:
        raise _not_found(name, data_dir, data_dir / folder / "raw" / _IDX_FILES[0], "download is off", f"{folder}/raw/")

    classes = list(tv_class.classes)

    def build():
        train_x, test_x = _read_idx(files[0], 3), _read_idx(files[2], 3)
        train_y, test_y = _read_idx(files[1], 1), _read_idx(files[3], 1)
        for images, labels, img_path, lbl_path in ((train_x, train_y, files[0], files[1]), (test_x, test_y, files[2], files[3])):
            if len(images) != len(labels):
                raise UserError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels; "
                                f"the two files must come from the same release of {name}")
            if len(labels) and int(labels.max()) >= len(classes):
                raise UserError(f"{lbl_path} has label {int(labels.max())} but {name} has {len(classes)} classes; replace the file with the original")
        tensors = (train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long())
        return classes, tensors, f"IDX files in {files[0].parent}"

    return build_cached(name, source_key(name, files), cache_dir, build)


def _find_idx_files(data_dir: Path, folder: str) -> list[Path] | None:
    """The four IDX files in the first folder that holds all of them, or None."""
    for where in (data_dir, data_dir / folder / "raw", data_dir / folder):
        found = []
        for stem in _IDX_FILES:
            # Some mirrors write "train-images.idx3-ubyte"; accept both spellings.
            names = [stem, stem.replace("-idx", ".idx")]
            hits = [where / (n + ext) for n in names for ext in ("", ".gz") if (where / (n + ext)).is_file()]
            if not hits:
                break
            found.append(hits[0])
        else:
            return found
    return None


def _read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Parse an IDX file of unsigned bytes with `ndim` dimensions (gzip detected by content)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"cannot read IDX file {path}: {_short(exc)}; replace it with an intact copy") from exc
    # Header: two zero bytes, type code 0x08 (unsigned byte), dimension count,
    # then one big-endian uint32 per dimension.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise UserError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (bad magic number {raw[:4].hex() or 'empty'}, "
                        f"expected 000008{ndim:02x}); replace it with the original file")
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)) if len(raw) >= header else ()
    if len(dims) != ndim or len(raw) != header + int(np.prod(dims)):
        raise UserError(f"{path} has the wrong size ({len(raw)} bytes for dimensions {dims}); the file is truncated or corrupt, replace it")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy())


# ----------------------------------------------------------------- CIFAR

def load_cifar(name: str, data_dir: Path, cache_dir: str | os.PathLike, download: bool) -> ImageData:
    """CIFAR-10/100 through torchvision (which checks the files' MD5 sums)."""
    import torchvision.datasets as tvd

    tv_name, folder = CIFAR_DATASETS[name]
    tv_class = getattr(tvd, tv_name)
    batches = data_dir / folder
    if not batches.is_dir() or not any(batches.iterdir()):
        if not download:
            raise _not_found(name, data_dir, batches, "download is off", f"{folder}/")
        try:
            with _remove_new_folders_on_failure(batches):
                tv_class(root=str(data_dir), train=True, download=True)
        except Exception as exc:
            raise _not_found(name, data_dir, batches, f"download failed: {_short(exc)}", f"{folder}/") from exc
    files = sorted(p for p in batches.iterdir() if p.is_file())

    def build():
        try:
            train, test = (tv_class(root=str(data_dir), train=t, download=False) for t in (True, False))
        except Exception as exc:  # torchvision: "Dataset not found or corrupted"
            raise UserError(f"{name} files in {batches} are incomplete or corrupt ({_short(exc)}); "
                            f"delete that folder and download {name} again") from exc
        # torchvision keeps CIFAR as numpy [N, H, W, C]; the trainer wants [N, C, H, W].
        tensors = (torch.from_numpy(train.data).permute(0, 3, 1, 2), torch.tensor(train.targets, dtype=torch.int64),
                   torch.from_numpy(test.data).permute(0, 3, 1, 2), torch.tensor(test.targets, dtype=torch.int64))
        return list(train.classes), tensors, f"torchvision {tv_name} files in {batches}"

    return build_cached(name, source_key(name, files), cache_dir, build)


# ----------------------------------------------------------------- helpers

@contextmanager
def _remove_new_folders_on_failure(target: Path):
    """A failed download leaves no folders behind that were not there before it."""
    top = None
    for p in [target, *target.parents]:
        if p.exists():
            break
        top = p
    try:
        yield
    except BaseException:
        if top is not None and top.exists():
            shutil.rmtree(top, ignore_errors=True)
        raise


def _not_found(name: str, data_dir: Path, looked_for: Path, why: str, holds: str) -> UserError:
    return UserError(f"{name} not found in {data_dir} (looked for {looked_for}) and {why}; "
                     f"pass --data-dir pointing at a folder that holds {holds}, or allow the download on a machine with internet")


def _short(exc: BaseException) -> str:
    """An exception as one short line, for embedding in a UserError message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
