"""On-disk cache of decoded datasets: one torch file per dataset and source.

Decoding (IDX parsing, JPEG decoding, archive extraction) happens once; later
loads read a single file. The file name carries a key derived from the source
files' paths, sizes and modification times, so changed data gets a new entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

import torch

from nnstudy.data.imagedata import ImageData, check_tensors, fingerprint
from nnstudy.errors import UserError
from nnstudy.files import atomic_path

# Bump when the decoding changes, so old cache entries are not reused.
CACHE_FORMAT = 1
_TENSORS = ("train_x", "train_y", "test_x", "test_y")


def source_key(name: str, parts: Iterable[str | os.PathLike]) -> str:
    """Short hash of the dataset name and the identity of its source.

    Each part is either a path (hashed with its resolved location, size and
    modification time) or a plain string (hashed as is, e.g. a library version).
    """
    h = hashlib.sha256(f"{name}|format={CACHE_FORMAT}".encode())
    for part in parts:
        if isinstance(part, os.PathLike):
            st = os.stat(part)
            part = f"{os.path.realpath(part)}|{st.st_size}|{st.st_mtime_ns}"
        h.update(f"\n{part}".encode())
    return h.hexdigest()[:16]


def cache_file(cache_dir: str | os.PathLike, name: str, key: str) -> Path:
    return Path(cache_dir) / f"{name}-{key}.pt"


def load_cached(path: Path, name: str) -> ImageData | None:
    """Read a cache entry; None if it is absent, truncated, corrupt or stale."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != CACHE_FORMAT or blob.get("name") != name:
            return None
        data = ImageData(
            name=name,
            classes=[str(c) for c in blob["classes"]],
            fingerprint=str(blob["fingerprint"]),
            source=str(blob["source"]),
            **{k: blob[k] for k in _TENSORS},
        )
        check_tensors(name, data.classes, *(getattr(data, k) for k in _TENSORS))
    except Exception:
        # Any failure to read means "rebuild": a crash or full disk must never
        # make the dataset unusable.
        return None
    return data


def save_cached(path: Path, data: ImageData) -> None:
    blob = {k: getattr(data, k) for k in _TENSORS}
    blob.update(format=CACHE_FORMAT, name=data.name, classes=list(data.classes),
                fingerprint=data.fingerprint, source=data.source)
    with atomic_path(path) as tmp:
        try:
            torch.save(blob, tmp)
        except RuntimeError as exc:  # torch wraps disk-full and similar errors
            raise UserError(f"cannot write dataset cache {path}: {exc}; free disk space or choose another cache folder") from exc


def build_cached(
    name: str,
    key: str,
    cache_dir: str | os.PathLike,
    build: Callable[[], tuple[list[str], tuple[torch.Tensor, ...], str]],
) -> ImageData:
    """Return the cached dataset for `key`, building and caching it on a miss.

    `build()` returns (classes, (train_x, train_y, test_x, test_y), source).
    """
    path = cache_file(cache_dir, name, key)
    data = load_cached(path, name)
    if data is not None:
        return data
    classes, tensors, source = build()
    tensors = tuple(t.contiguous() for t in tensors)
    check_tensors(name, classes, *tensors)
    data = ImageData(name, list(classes), *tensors, fingerprint=fingerprint(classes, *tensors), source=source)
    save_cached(path, data)
    return data
