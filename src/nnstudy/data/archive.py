"""Safe extraction of tar archives (.tar, .tar.gz, .tgz) of image folders.

Archives come from wherever the user found them, so every member is checked
before anything is written: no absolute paths, no `..`, no device files, and
no links that point outside the extraction folder. Python's own "data" filter
is applied as well where available, but is not relied on alone (it is missing
on older Pythons and its rules may change).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from nnstudy.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract `archive` into the folder `dest` and return `dest`.

    The archive is unpacked into a temporary sibling folder which is renamed
    to `dest` only once complete, so an interrupted extraction is never taken
    for a finished one. If `dest` already exists it is assumed complete.

    Raises
    ------
    UserError
        If the archive cannot be read or any member is unsafe; nothing is left
        behind in that case.
    """
    if dest.is_dir():
        return dest
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.mkdir(parents=True)
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(archive, member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
        os.replace(tmp, dest)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # tarfile's own filter errors (FilterError) are TarError subclasses.
        raise UserError(f"cannot extract {archive}: {' '.join(str(exc).split()) or type(exc).__name__}; "
                        f"check that it is a complete .tar/.tar.gz of train/ and test/ folders") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Raise UserError unless `member` stays inside the extraction folder."""
    name = member.name
    bad = None
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        bad = "has an absolute path"
    elif ".." in path.parts:
        bad = "has a '..' component"
    elif not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        bad = "is a device, FIFO or other special file"
    elif member.issym() or member.islnk():
        target = PurePosixPath(member.linkname.replace("\\", "/"))
        # Symlink targets are relative to the link's folder; hardlink targets
        # to the archive root.
        base = path.parent if member.issym() else PurePosixPath()
        if target.is_absolute() or not _stays_inside(base / target):
            bad = f"is a link to {member.linkname!r}, outside the archive"
    if bad:
        raise UserError(f"unsafe archive {archive}: member {name!r} {bad}; "
                        f"refusing to extract it, repack the archive with plain files only")


def _stays_inside(path: PurePosixPath) -> bool:
    """True if the relative path, with '..' resolved lexically, never climbs above its root."""
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True
