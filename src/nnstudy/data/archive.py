"""Safe reading of tar archives (.tar, .tar.gz, .tgz) of image folders.

Archives are read straight into memory rather than extracted: writing tens of
thousands of small files took 15-55 s for CIFAR-10 on a slow disk, reading
the members takes about 1 s, and nothing can ever be written outside the cache.
Members are still checked as if they were to be extracted (no absolute paths,
no `..`, no device files, no links leaving the archive), so an archive that
would be unsafe to unpack is refused with a message naming the member.

Because everything is held in memory, what an archive may expand to is
limited (a 1 MB .tar.gz can hold terabytes of zeros). The limits are checked
on the uncompressed stream as it is read, so a bomb is refused after at most
the limit has been expanded, never the whole of it.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from nnstudy.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

# Environment variable -> (default, what it limits). CIFAR-10 as JPEGs expands
# to 93 MB of tar stream in 60,022 members of at most 1.1 KB each; the defaults
# leave room for archives over fifteen times that, and bigger data belongs in a folder.
LIMITS = {
    "NNSTUDY_MAX_ARCHIVE_BYTES": (2 * 2**30, "uncompressed bytes in all"),
    "NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES": (64 * 2**20, "uncompressed bytes in one member or header"),
    "NNSTUDY_MAX_ARCHIVE_MEMBERS": (1_000_000, "members"),
}


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_limit(var: str) -> int:
    """The limit `var` from the environment, or its default."""
    default = LIMITS[var][0]
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{var}={raw!r} is not a positive whole number; set it to a whole number such as {default} (the default)")
    return value


class _OverLimit(Exception):
    """The uncompressed stream went past a limit (see _Bounded)."""

    def __init__(self, var: str, limit: int):
        self.var, self.limit = var, limit


class _Bounded:
    """The uncompressed tar stream, refusing to go past the size limits.

    tarfile reads pax and GNU long-name headers whole before yielding any
    member, so member sizes alone cannot bound memory: every read is bounded
    here, by its length and by the stream position it reaches.
    """

    def __init__(self, stream, total: int, one_read: int):
        self.stream, self.total, self.one_read = stream, total, one_read

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.one_read + tarfile.BLOCKSIZE:
            raise _OverLimit("NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES", self.one_read)
        data = self.stream.read(size)
        if self.stream.tell() > self.total:
            raise _OverLimit("NNSTUDY_MAX_ARCHIVE_BYTES", self.total)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # tarfile skips data by seeking forward: decompressed and dropped, but still bounded.
        if whence == os.SEEK_SET and offset > self.total:
            raise _OverLimit("NNSTUDY_MAX_ARCHIVE_BYTES", self.total)
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()


def _uncompressed(fh):
    """`fh` as an uncompressed stream, whatever the compression (tarfile's "r:*" choices)."""
    magic = fh.read(6)
    fh.seek(0)
    for prefix, module in ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma)):
        if magic.startswith(prefix):
            return module.open(fh, "rb")
    return fh


def read_archive(archive: Path) -> tuple[dict[str, bytes], set[str]]:
    """Read every file of a tar archive into memory.

    Returns
    -------
    files : dict
        Normalised member path ("train/cat/1.png") -> content. Links inside
        the archive are resolved to their target's content.
    dirs : set
        Every folder path, including folders only implied by file paths.

    Raises
    ------
    UserError
        If the archive cannot be read, any member is unsafe, or it expands
        past a limit in LIMITS.
    """
    total, one, most = (archive_limit(var) for var in LIMITS)
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    links: dict[str, tuple[str, str]] = {}  # link path -> (target path, target as written)
    where = "in its first header"
    try:
        with open(archive, "rb") as fh, _uncompressed(fh) as stream, \
                tarfile.open(fileobj=_Bounded(stream, total, one), mode="r:") as tar:
            for count, member in enumerate(tar, 1):
                check_member(archive, member)
                where = f"at member {member.name!r}"
                if count > most:
                    raise _OverLimit("NNSTUDY_MAX_ARCHIVE_MEMBERS", most)
                path = PurePosixPath(member.name)
                key = path.as_posix()
                if key in ("", "."):
                    continue
                dirs.update(p.as_posix() for p in path.parents if p.as_posix() != ".")
                if member.isdir():
                    dirs.add(key)
                elif member.issym() or member.islnk():
                    # Resolved below, from what was read: tarfile's own resolution
                    # rewinds the stream for each link and recurses forever on a loop.
                    base = path.parent if member.issym() else PurePosixPath()
                    links[key] = (_resolve(base / member.linkname.replace("\\", "/")), member.linkname)
                else:
                    _check_size(archive, member, total, one)
                    files[key] = tar.extractfile(member).read()
                where = f"after member {member.name!r}"
    except _OverLimit as over:
        what = LIMITS[over.var][1]
        raise UserError(f"archive {archive} goes past the limit of {over.limit:,} {what} ({where}); it may be a "
                        f"decompression bomb: if it is genuine, set {over.var} higher, or unpack it and pass the folder") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise UserError(f"cannot read archive {archive}: {' '.join(str(exc).split()) or type(exc).__name__}; "
                        f"check that it is a complete .tar/.tar.gz of train/ and test/ folders") from exc
    for key, (target, written) in links.items():
        seen = {key}
        while target in links and target not in seen:  # a link to a link
            seen.add(target)
            target = links[target][0]
        if target not in files:
            why = "a loop of links" if target in seen else "a missing or non-file member"
            raise UserError(f"unsafe archive {archive}: member {key!r} is a link to {written!r}, {why}; "
                            f"repack the archive with plain files only")
        files[key] = files[target]
    return files, dirs


def _check_size(archive: Path, member: tarfile.TarInfo, total: int, one: int) -> None:
    """Refuse a member from its header, before its data is expanded."""
    if member.size > one:
        raise UserError(f"archive {archive}: member {member.name!r} expands to {member.size:,} bytes, over the limit of "
                        f"{one:,} for one member; it may be a decompression bomb: if it is genuine, set "
                        f"NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES higher, or unpack the archive and pass the folder")
    if member.offset_data + member.size > total:
        raise _OverLimit("NNSTUDY_MAX_ARCHIVE_BYTES", total)


def check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Raise UserError unless `member` would stay inside the folder it is unpacked into."""
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
        if target.is_absolute() or _resolve(base / target) is None:
            bad = f"is a link to {member.linkname!r}, outside the archive"
    if bad:
        raise UserError(f"unsafe archive {archive}: member {name!r} {bad}; "
                        f"refusing to read it, repack the archive with plain files only")


def _resolve(path: PurePosixPath) -> str | None:
    """The relative path with '.' and '..' resolved lexically; None if it climbs above its root."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)
