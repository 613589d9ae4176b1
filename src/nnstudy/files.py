"""Crash-safe file writes: write to a temporary name, fsync, rename into place.

A reader (or a resumed study) therefore sees either the old file or the new
one, never a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nnstudy.errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; check the output folder's permissions and free space") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        crash_point(str(path))
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; check the output folder's permissions and free space") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


_CRASH_COUNTS: dict[str, int] = {}
# Set in a pool worker's environment: the driver's pid (a worker forked by the warm server has that server as parent).
DRIVER_PID = "NNSTUDY_DRIVER_PID"


def crash_point(name: str) -> None:
    """Test hook: NNSTUDY_CRASH_AT="SUBSTRING:N" SIGKILLs this process at the N-th crash point
    (counted per process) whose name contains SUBSTRING. Every atomic write is one (named by its
    path, so "runs/b/seed-0/checkpoint.pt" picks one run), just before
    its rename (the temp file is written, the target is not); a job's start is another
    ("job-start"), and so is every training step ("train-step epoch E step S of N"). Used by
    tests/test_resume.py to crash at exact points. With NNSTUDY_CRASH_ONCE=MARKER only the first
    process to get there dies (it creates MARKER and writes the point's name into it)."""
    spec = os.environ.get("NNSTUDY_CRASH_AT")
    if spec and spec.rpartition(":")[0] in name:
        key = spec.rpartition(":")[0]
        _CRASH_COUNTS[key] = _CRASH_COUNTS.get(key, 0) + 1
        if str(_CRASH_COUNTS[key]) == spec.rpartition(":")[2]:
            marker = os.environ.get("NNSTUDY_CRASH_ONCE")
            if marker:
                try:
                    with open(marker, "x") as fh:
                        fh.write(name)  # tests read where the kill landed
                except FileExistsError:
                    return
            if os.environ.get("NNSTUDY_CRASH_PARENT") == "1":  # a worker takes its driver down too: the whole study dies
                os.kill(int(os.environ.get(DRIVER_PID) or os.getppid()), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars and arrays, Paths: the only non-JSON types we store.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
