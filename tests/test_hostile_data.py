"""Hostile data: decompression bombs, images over PIL's pixel limit, symlink loops.

Each must stop with one clear UserError line naming the file, quickly, without
holding the expanded data in memory, and without writing anything.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from nnstudy.data import load_dataset
from test_data import files_under, make_image_folder, make_tar, raises_user_error

MiB = 2**20
ZEROS_MIB = gzip.compress(bytes(MiB), compresslevel=9)  # about 1 KB


def write_bomb(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A .tar.gz whose members hold zeros (sizes in whole MiB).

    Concatenated gzip members form one valid gzip stream, so a GiB of zeros is
    1024 copies of one compressed MiB: about 1 MB on disk, written in
    milliseconds, and never held in memory here.
    """
    with open(path, "wb") as out:
        for info in members:
            assert info.size % MiB == 0
            out.write(gzip.compress(info.tobuf(tarfile.USTAR_FORMAT)))
            for _ in range(info.size // MiB):
                out.write(ZEROS_MIB)
        out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))  # end of archive
    return path


def zeros(name: str, size: int, kind=tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info


def refused_with_little_memory(load, max_peak: int, *must_contain) -> str:
    """Expect a one-line UserError, and Python's peak allocation during `load` under max_peak bytes."""
    tracemalloc.start()
    try:
        msg = raises_user_error(load, *must_contain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < max_peak, f"peak {peak / MiB:.0f} MiB while refusing: {msg}"
    return msg


# ----------------------------------------------------------------- archive size limits

@pytest.mark.parametrize("var,value", [
    ("NNSTUDY_MAX_ARCHIVE_BYTES", "10000"),       # the small archive expands to about 30 KB
    ("NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES", "50"),   # each PNG is over 100 bytes
    ("NNSTUDY_MAX_ARCHIVE_MEMBERS", "5"),         # it has 24 members
])
def test_archive_over_a_lowered_limit_is_refused(tmp_path, monkeypatch, var, value):
    make_image_folder(tmp_path / "img")
    archive = make_tar(tmp_path / "img.tar.gz", tmp_path / "img", arcname=".")
    monkeypatch.setenv(var, value)
    before = files_under(tmp_path)
    raises_user_error(lambda: load_dataset("imagefolder", archive, tmp_path / "c"), archive, var, f"{int(value):,}")
    assert files_under(tmp_path) == before  # no cache entry
    monkeypatch.setenv(var, "100_000_000")  # raised, the same archive loads
    assert len(load_dataset("imagefolder", archive, tmp_path / "c").train_y) == 9


def test_bad_limit_setting_is_a_user_error(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "img")
    archive = make_tar(tmp_path / "img.tar", tmp_path / "img", arcname=".")
    monkeypatch.setenv("NNSTUDY_MAX_ARCHIVE_BYTES", "lots")
    raises_user_error(lambda: load_dataset("imagefolder", archive, tmp_path / "c"), "NNSTUDY_MAX_ARCHIVE_BYTES", "'lots'")


def test_one_huge_member_is_refused_before_expanding(tmp_path):
    # 1 GiB of zeros in a 1 MB file: refused from its header with the default limits.
    bomb = write_bomb(tmp_path / "bomb.tar.gz", [zeros("train/cat/0.png", 1024 * MiB)])
    assert bomb.stat().st_size < 2 * MiB
    refused_with_little_memory(lambda: load_dataset("imagefolder", bomb, tmp_path / "c"), 32 * MiB,
                               bomb, "'train/cat/0.png'", "1,073,741,824", "NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES")
    assert not (tmp_path / "c").exists()


def test_huge_pax_header_is_refused_before_expanding(tmp_path):
    # tarfile reads a pax header whole, before any member is seen: the stream itself is bounded.
    bomb = write_bomb(tmp_path / "pax.tar.gz", [zeros("././@PaxHeader", 512 * MiB, tarfile.XHDTYPE)])
    refused_with_little_memory(lambda: load_dataset("imagefolder", bomb, tmp_path / "c"), 32 * MiB,
                               bomb, "NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES")


def test_many_members_over_the_total_are_refused_while_streaming(tmp_path, monkeypatch):
    # Each member is under the per-member limit; the total (960 MiB) is over a lowered 100 MiB.
    bomb = write_bomb(tmp_path / "many.tar.gz", [zeros(f"train/cat/{i}.png", 40 * MiB) for i in range(24)])
    monkeypatch.setenv("NNSTUDY_MAX_ARCHIVE_BYTES", str(100 * MiB))
    msg = refused_with_little_memory(lambda: load_dataset("imagefolder", bomb, tmp_path / "c"), 200 * MiB,
                                     bomb, "NNSTUDY_MAX_ARCHIVE_BYTES", f"{100 * MiB:,}")
    assert "'train/cat/2.png'" in msg  # the member that would cross the limit


# ----------------------------------------------------------------- images over PIL's pixel limit

@pytest.mark.parametrize("fmt,side", [("png", 40), ("jpeg", 40), ("bmp", 40), ("bmp", 50), ("png", 50)])
@pytest.mark.parametrize("packed", [False, True], ids=["folder", "archive"])
def test_image_over_pil_pixel_limit_names_the_file(tmp_path, monkeypatch, fmt, side, packed):
    # Limit 1000 pixels: 40x40 is in PIL's warning range, 50x50 past its error at twice the limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    make_image_folder(tmp_path / "img")
    Image.new("RGB", (side, side), (1, 2, 3)).save(tmp_path / "img" / "train" / "dog" / f"big.{fmt}")
    data = make_tar(tmp_path / "img.tgz", tmp_path / "img", arcname="top") if packed else tmp_path / "img"
    shown = f"{data}:top/train/dog/big.{fmt}" if packed else str(data / "train" / "dog" / f"big.{fmt}")
    before = files_under(tmp_path)
    raises_user_error(lambda: load_dataset("imagefolder", data, tmp_path / "c"), shown, "MAX_IMAGE_PIXELS", "1,000")
    assert files_under(tmp_path) == before
    assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's own setting is left as it was


def test_pixel_limit_follows_pil_setting(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "img")  # 6x5 = 30 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # at the limit is fine, as in PIL
    assert len(load_dataset("imagefolder", tmp_path / "img", tmp_path / "c").train_y) == 9
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 29)
    raises_user_error(lambda: load_dataset("imagefolder", tmp_path / "img", tmp_path / "c2"), "MAX_IMAGE_PIXELS")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's way to turn the check off
    assert len(load_dataset("imagefolder", tmp_path / "img", tmp_path / "c3").train_y) == 9


# ----------------------------------------------------------------- symlink loops

@pytest.mark.parametrize("links,bad,expect", [
    ({"train/cat/loop": ".."}, "train/cat/loop", "loop"),          # a folder link to an ancestor
    ({"train/cat/here": "."}, "train/cat/here", "loop"),           # ... to its own folder
    ({"test/dog/top": "<root>"}, "test/dog/top", "loop"),          # ... to the top, by absolute path
    ({"train/cat/a": "a"}, "train/cat/a", "loop"),                 # a link to itself
    ({"train/cat/a": "b", "train/cat/b": "a"}, "train/cat/a|train/cat/b", "loop"),  # either, as listed
    ({"train/cat/gone.png": "nowhere.png"}, "train/cat/gone.png", "missing"),
])
def test_symlink_loop_in_folder_names_the_path(tmp_path, links, bad, expect):
    root = tmp_path / "img"
    make_image_folder(root)
    for name, target in links.items():
        os.symlink(str(root) if target == "<root>" else target, root / name)
    msg = raises_user_error(lambda: load_dataset("imagefolder", root, tmp_path / "c"), "symlink", expect)
    assert any(f"{root / name} " in msg for name in bad.split("|")), msg
    assert not (tmp_path / "c").exists()


def test_symlinks_without_loops_are_followed(tmp_path):
    make_image_folder(tmp_path / "img")
    make_image_folder(tmp_path / "elsewhere", classes=("fox",))
    os.symlink(tmp_path / "elsewhere" / "train" / "fox", tmp_path / "img" / "train" / "fox")
    os.symlink(tmp_path / "elsewhere" / "test" / "fox", tmp_path / "img" / "test" / "fox")
    os.symlink("0.png", tmp_path / "img" / "train" / "cat" / "copy.png")
    data = load_dataset("imagefolder", tmp_path / "img", tmp_path / "c")
    assert data.classes == ["cat", "dog", "eel", "fox"] and len(data.train_y) == 13


@pytest.mark.parametrize("links", [{"train/cat/a.png": "a.png"}, {"train/cat/a.png": "b.png", "train/cat/b.png": "a.png"}])
def test_link_loop_in_archive_names_the_member(tmp_path, links):
    make_image_folder(tmp_path / "img")
    extra = []
    for name, target in links.items():
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        extra.append((info, None))
    archive = make_tar(tmp_path / "loop.tar.gz", tmp_path / "img", arcname=".", extra=extra)
    raises_user_error(lambda: load_dataset("imagefolder", archive, tmp_path / "c"), archive, "'train/cat/a.png'", "loop")


# ----------------------------------------------------------------- the command, end to end

STUDY = """name = "hostile"
seeds = [0]

[dataset]
name = "imagefolder"
data_dir = "{data}"

[model]
kind = "mlp"
hidden = [8]

[train]
lr = 0.05
batch_size = 8
epochs = 1

[variants.a]
"""


def _bomb_archive(tmp_path: Path) -> tuple[Path, list[str]]:
    bomb = write_bomb(tmp_path / "bomb.tar.gz", [zeros("train/cat/0.png", 1024 * MiB)])
    return bomb, [str(bomb), "NNSTUDY_MAX_ARCHIVE_MEMBER_BYTES"]


def _looping_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    make_image_folder(tmp_path / "img")
    os.symlink("..", tmp_path / "img" / "train" / "cat" / "loop")
    return tmp_path / "img", [str(tmp_path / "img" / "train" / "cat" / "loop"), "loop"]


def _huge_image(tmp_path: Path) -> tuple[Path, list[str]]:
    make_image_folder(tmp_path / "img")
    # 9500x9500 = 90,250,000 pixels, just over PIL's default limit; an 88 KB PNG.
    Image.new("L", (9500, 9500)).save(tmp_path / "img" / "test" / "eel" / "huge.png")
    return tmp_path / "img", [str(tmp_path / "img" / "test" / "eel" / "huge.png"), "MAX_IMAGE_PIXELS"]


@pytest.mark.parametrize("make", [_bomb_archive, _looping_folder, _huge_image], ids=["bomb", "symlink-loop", "huge-image"])
def test_cli_refuses_hostile_data_and_writes_nothing(tmp_path, make):
    data, expected = make(tmp_path)
    study = tmp_path / "hostile.toml"
    study.write_text(STUDY.format(data=data.as_posix()))
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    cache.mkdir()
    (out / "earlier.txt").write_text("results of an earlier study")
    proc = subprocess.run([sys.executable, "-m", "nnstudy", "run", str(study), "--out", str(out), "--cache-dir", str(cache),
                           "--quiet", "--executor", "local"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnstudy: error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(cache.iterdir()) == []
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]
    assert (out / "earlier.txt").read_text() == "results of an earlier study"
