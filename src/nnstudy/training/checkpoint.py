"""Per-run checkpoints: written after every epoch, so a killed study resumes exactly.

A checkpoint holds everything a run needs to continue (weights, optimiser,
random streams, history, kept test predictions) and the run's identity hash,
so a run folder left behind by another config is never resumed by mistake.

A run's checkpoint folder is its run folder by default. With `--checkpoint-dir`
it is a folder that every node of a cluster and the driver reach: a local or
`file://` path (a shared filesystem), or an object store URI such as
`s3://bucket/prefix`, opened with pyarrow.fs (what Ray Train uses for its
`storage_path`). Folders and files are named by a Path or a string throughout.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch

from nnstudy import files
from nnstudy.errors import UserError

CHECKPOINT = "checkpoint.pt"
# The checkpoint one epoch earlier, kept so that a crash between two seeds' checkpoint writes
# can be rolled back and the seeds of a variant resume together, as the same stacked group
# (a different grouping changes the last bits of float results).
PREVIOUS_CHECKPOINT = "checkpoint-prev.pt"

Location = str | Path


def checkpoint_folder(root: Location, *parts: str) -> str:
    """The folder `root/part/...`, for a local root or an object store URI."""
    if _in_object_store(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(_local_path(root).joinpath(*parts))


def save_checkpoint(run_dir: Location, checkpoint: dict) -> None:
    """Write the new checkpoint; the one it replaces becomes the previous one."""
    _folder(run_dir).save(checkpoint)


def load_checkpoint(path: Location, mmap: bool = False) -> dict | None:
    """A run's checkpoint, or None; a truncated or corrupt file is a clear error.

    `mmap=True` maps the tensors instead of reading them: cheap when only the
    metadata (epoch, identity) is wanted (local files only).
    """
    folder, name = _split(path)
    if not folder.exists(name):
        return None
    source = folder.open(name)
    try:
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap and isinstance(source, Path))
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} is damaged ({type(exc).__name__}: {detail}); delete it to restart that "
                        "run from scratch, or rerun with --force") from None


def resume_checkpoint(run_dir: Location) -> Location:
    """The checkpoint a run resumes from: the latest, or the previous one if a crash came between their renames."""
    folder = _folder(run_dir)
    latest = folder.exists(CHECKPOINT) or not folder.exists(PREVIOUS_CHECKPOINT)
    return folder.where(CHECKPOINT if latest else PREVIOUS_CHECKPOINT)


def checkpoint_epoch(path: Location) -> int:
    """The epoch a checkpoint was written at (0 without one)."""
    ckpt = load_checkpoint(path, mmap=True)
    return ckpt["epoch"] if ckpt else 0


def checkpoint_identity(run_dir: Location) -> str | None:
    """The identity hash of the run whose checkpoint the folder holds (None: no checkpoint)."""
    ckpt = load_checkpoint(resume_checkpoint(run_dir), mmap=True)
    return ckpt.get("identity") if ckpt else None


def has_checkpoint(run_dir: Location) -> bool:
    """Whether the folder holds a checkpoint, the latest or the previous one (reads neither)."""
    folder = _folder(run_dir)
    return folder.exists(CHECKPOINT) or folder.exists(PREVIOUS_CHECKPOINT)


def remove_checkpoints(run_dir: Location) -> None:
    """Delete a run's checkpoints (nothing else in its folder)."""
    folder = _folder(run_dir)
    folder.delete(CHECKPOINT)
    folder.delete(PREVIOUS_CHECKPOINT)


def remove_temp_files(run_dir: Location) -> None:
    """Temp files of checkpoint writes cut short by a crash (call only while no job writes the folder)."""
    _folder(run_dir).remove_temp_files()


def align_checkpoints(run_dirs: list[Location]) -> dict[Location, int]:
    """Roll runs of one variant back to a common epoch where their checkpoints allow it.

    A crash between two seeds' checkpoint writes leaves some seeds one epoch ahead; resuming
    them apart would train them in a different stacked group than an uninterrupted run.
    Returns the epoch each run now resumes from.
    """
    epochs = {d: checkpoint_epoch(resume_checkpoint(d)) for d in run_dirs}
    low = min(epochs.values(), default=0)
    for d, e in epochs.items():
        folder = _folder(d)
        has_prev = folder.exists(PREVIOUS_CHECKPOINT)
        if e > low and has_prev and checkpoint_epoch(folder.where(PREVIOUS_CHECKPOINT)) == low:
            folder.move(PREVIOUS_CHECKPOINT, CHECKPOINT)
            epochs[d] = low
        elif e > low == 0:  # the others have not finished one epoch: start this one afresh too
            remove_checkpoints(d)
            epochs[d] = 0
        elif e == low and not folder.exists(CHECKPOINT) and has_prev:
            folder.move(PREVIOUS_CHECKPOINT, CHECKPOINT)
    return epochs


# --- where checkpoints are stored ------------------------------------------------------------
class _LocalFolder:
    """A folder on a disk this process sees (maybe a shared one): atomic writes by rename."""

    def __init__(self, path: Path):
        self.path = path

    def where(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def open(self, name: str) -> Path:
        return self.path / name

    def save(self, checkpoint: dict) -> None:
        with files.atomic_path(self.path / CHECKPOINT) as tmp:
            torch.save(checkpoint, tmp)
            if self.exists(CHECKPOINT):
                self.move(CHECKPOINT, PREVIOUS_CHECKPOINT)

    def move(self, src: str, dst: str) -> None:
        os.replace(self.path / src, self.path / dst)

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def remove_temp_files(self) -> None:
        for tmp in self.path.glob(f".{CHECKPOINT}.*.tmp"):  # files.atomic_path's names
            tmp.unlink(missing_ok=True)


class _StoreFolder:
    """A folder in an object store: no atomic rename, but an object is written whole or not at all."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.path = _filesystem(self.uri)

    def where(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def exists(self, name: str) -> bool:
        from pyarrow.fs import FileType
        return self._call(self.fs.get_file_info, self._path(name)).type == FileType.File

    def open(self, name: str) -> io.BytesIO:
        with self._call(self.fs.open_input_file, self._path(name)) as fh:
            return io.BytesIO(fh.read())

    def save(self, checkpoint: dict) -> None:
        # The local write's order, with moves (copy + delete on S3) for renames: a new object under a
        # temporary key, the latest becomes the previous, the new one the latest. A crash between the
        # two moves leaves only the previous checkpoint, which resume_checkpoint falls back to.
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        tmp = f".{CHECKPOINT}.tmp"
        self._call(self.fs.create_dir, self.path)
        with self._call(self.fs.open_output_stream, self._path(tmp)) as out:
            out.write(buf.getbuffer())
        files.crash_point(self.where(CHECKPOINT))
        if self.exists(CHECKPOINT):
            self.move(CHECKPOINT, PREVIOUS_CHECKPOINT)
        self.move(tmp, CHECKPOINT)

    def move(self, src: str, dst: str) -> None:
        self._call(self.fs.move, self._path(src), self._path(dst))

    def delete(self, name: str) -> None:
        if self.exists(name):
            self._call(self.fs.delete_file, self._path(name))

    def remove_temp_files(self) -> None:
        self.delete(f".{CHECKPOINT}.tmp")

    def _path(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _call(self, fn, *args):
        """A store's error (credentials, network, permissions) as one clear line."""
        try:
            return fn(*args)
        except OSError as exc:
            raise UserError(f"checkpoint folder {self.uri}: {' '.join(str(exc).split())[:300]}; check "
                            "--checkpoint-dir and the store's credentials on this machine") from exc


def _in_object_store(location: Location) -> bool:
    text = str(location)
    return isinstance(location, str) and "://" in text and not text.startswith("file://")


def _local_path(location: Location) -> Path:
    text = str(location)
    return Path(url2pathname(urlparse(text).path)) if text.startswith("file://") else Path(location)


def _folder(location: Location):
    return _StoreFolder(location) if _in_object_store(location) else _LocalFolder(_local_path(location))


def _split(path: Location):
    """(folder, file name) of a checkpoint file."""
    if _in_object_store(path):
        folder, _, name = str(path).rpartition("/")
        return _StoreFolder(folder), name
    path = _local_path(path)
    return _LocalFolder(path.parent), path.name


@lru_cache(maxsize=None)
def _filesystem(uri: str):
    """(pyarrow filesystem, path inside it) for a URI; made once per folder (S3 looks up the bucket's region)."""
    try:
        from pyarrow.fs import FileSystem
    except ImportError:
        raise UserError(f"checkpoint folder {uri}: object stores need pyarrow: pip install 'nnstudy[ray]' "
                        "(or pip install pyarrow)") from None
    try:
        return FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"checkpoint folder {uri}: pyarrow cannot open it ({' '.join(str(exc).split())[:200]}); "
                        "give a local folder, file:///shared/folder, or a URI such as s3://bucket/prefix") from None


# --- a run's state, wherever it trains ---------------------------------------------------------------------
def save_state(checkpoint_dir: str, state: dict, identity: str) -> None:
    """After every epoch: the run's checkpoint, with its identity (never resumed by another config)."""
    save_checkpoint(checkpoint_dir, {**state, "identity": identity})


def resume_state(checkpoint_dir: str) -> dict | None:
    """The checkpoint a run continues from (None: it starts afresh)."""
    return load_checkpoint(resume_checkpoint(checkpoint_dir))
