"""Hostile inputs: each gives one clear `nnstudy: error:` line, exit 2, no traceback, and a consistent store.

Most cases run the CLI in-process (`nnstudy.cli.main`) to keep the suite fast; a
few run it as a subprocess to check the real stderr and exit status.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from studies import run_args, run_process, tiny_study

from nnstudy import files
from nnstudy.cli import main

# One worker for the module: its tests share one module-scoped study, built once rather than on each worker.
pytestmark = pytest.mark.xdist_group("bad_inputs")

TINY = tiny_study(epochs=3, report_epochs=[1])


def assert_one_line_error(rc: int, err: str, *must_contain: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    # Progress lines of a study that got as far as training ("tiny: ...", "  a seed 0: ...") are not errors.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("tiny: ", "  "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("nnstudy: error: "), err
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


def assert_store_ok(out: Path, study: str = "tiny", n_runs: int = 4) -> None:
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = [r[0] for r in conn.execute("SELECT status FROM runs WHERE study=?", (study,))]
    assert statuses == ["done"] * n_runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An output folder holding the finished tiny study (trained once for the module)."""
    root = tmp_path_factory.mktemp("finished")
    study = root / "tiny.toml"
    study.write_text(TINY)
    out, cache = root / "out", root / "cache"
    assert main(run_args(study, out, cache)) == 0
    assert_store_ok(out)
    return types.SimpleNamespace(root=root, study=study, out=out, cache=cache)


# --------------------------------------------------------------------------- study files and options
BAD_STUDIES = {
    "malformed-toml": (TINY + "\n[train\n", ["not valid TOML"]),
    "unknown-top-level-key": ("colour = 1\n" + TINY, ["unknown key 'colour'"]),
    "unknown-model-key": (TINY.replace('kind = "mlp"', 'kind = "mlp"\nwidth = 3'), ["unknown key 'model.width'"]),
    "unknown-variant-key": (TINY + "\n[variants.c]\nmodel.widht = 3\n", ["unknown key 'variants.c.model.widht'"]),
    "lr-wrong-type": (TINY.replace("lr = 0.05", 'lr = "fast"'), ["train.lr", '"fast"']),
    "batch-size-zero": (TINY.replace("batch_size = 32", "batch_size = 0"), ["train.batch_size", "greater than 0"]),
    "hidden-negative": (TINY.replace("hidden = [16]", "hidden = [-3]"), ["model.hidden", "> 0"]),
    "subset-zero": (TINY.replace("subset = 300", "subset = 0"), ["dataset.subset", "greater than 0"]),
    "empty-seeds": (TINY.replace("seeds = [0, 1]", "seeds = []"), ["seeds"]),
    "variant-name-slash": (TINY + '\n[variants."x/y"]\n', ["variant name 'x/y'"]),
    "baseline-unknown": ('baseline = "nope"\n' + TINY, ["baseline 'nope' is not a variant"]),
    "report-epoch-too-big": (TINY.replace("report_epochs = [1]", "report_epochs = [99]"), ["report_epochs entry 99"]),
    "mean-without-std": (TINY.replace('name = "digits"', 'name = "digits"\nmean = [0.5]'), ["dataset", "mean and dataset.std"]),
    "variant-changes-test-set": (TINY + '\n[variants.c]\ndataset.test_subset = 50\n',
                                 ["variants.c.dataset.test_subset", "same data"]),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_bad_study_file(case, finished, cli, tmp_path):
    text, expected = BAD_STUDIES[case]
    study = tmp_path / f"{case}.toml"
    study.write_text(text)
    rc, _, err = cli(*run_args(study, finished.out, finished.cache))
    line = assert_one_line_error(rc, err, str(study), *expected)
    assert ": :" not in line
    assert_store_ok(finished.out)


@pytest.mark.parametrize("argv, expected", [
    (["--seeds", ""], ["--seeds", "at least one seed"]),
    (["--seeds", "a,b"], ["--seeds", "'a,b'"]),
    (["--device", "cuda"], ["--device cuda"]),
])
def test_bad_options(argv, expected, finished, cli):
    if "cuda" in argv:
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    rc, _, err = cli(*run_args(finished.study, finished.out, finished.cache, *argv))
    assert_one_line_error(rc, err, *expected)
    assert_store_ok(finished.out)


def test_unknown_builtin_study(finished, cli):
    rc, _, err = cli(*run_args("no-such-study", finished.out, finished.cache))
    assert_one_line_error(rc, err, "no built-in study named 'no-such-study'", "quickstart")
    assert_store_ok(finished.out)


def test_show_unknown_study_and_list_missing_out(finished, cli, tmp_path):
    rc, _, err = cli("show", "nosuchstudy", "--out", str(finished.out))
    assert_one_line_error(rc, err, "no study named 'nosuchstudy'", "tiny")
    missing = tmp_path / "nonexistent"
    rc, _, err = cli("list", "--out", str(missing))
    assert_one_line_error(rc, err, str(missing), "no nnstudy results")
    assert not missing.exists()  # reading never creates an output folder
    assert_store_ok(finished.out)


# --------------------------------------------------------------------------- data
def test_missing_data_folder(finished, cli, tmp_path):
    # A path under tmp_path, not /nonexistent: torchvision's download attempt creates the folder.
    study = tmp_path / "mnist.toml"
    study.write_text(TINY.replace('name = "digits"', 'name = "mnist"'))
    missing = tmp_path / "nonexistent"
    rc, _, err = cli(*run_args(study, finished.out, finished.cache, "--data-dir", str(missing)))
    assert_one_line_error(rc, err, str(missing), "--data-dir")
    assert_store_ok(finished.out)


def _image_folder(root: Path, empty_class: bool = False, corrupt: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            if empty_class and split == "train" and cls == "dog":
                continue
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    if corrupt:
        (root / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return root


@pytest.mark.parametrize("kind", ["empty-class", "corrupt-image"])
def test_bad_image_folder(kind, finished, cli, tmp_path):
    data = _image_folder(tmp_path / "images", empty_class=kind == "empty-class", corrupt=kind == "corrupt-image")
    study = tmp_path / "images.toml"
    study.write_text(TINY.replace('name = "digits"', 'name = "imagefolder"').replace("subset = 300\ntest_subset = 100\n", ""))
    rc, _, err = cli(*run_args(study, finished.out, tmp_path / "cache", "--data-dir", str(data)))
    expected = ["dog", "empty"] if kind == "empty-class" else ["bad.png", "not a readable image"]
    assert_one_line_error(rc, err, *expected)
    assert_store_ok(finished.out)


# --------------------------------------------------------------------------- output folder and store
@pytest.mark.slow  # kills a process
def test_truncated_checkpoint(finished, cli, tmp_path):
    study, out = finished.study, tmp_path / "out"
    argv = run_args(study, out, finished.cache)
    # Seed 0's epoch-2 checkpoint write is cut short: both seeds of variant a stand at epoch 1
    # (seed 0's epoch-1 checkpoint is already moved to checkpoint-prev.pt; seed 1's is checkpoint.pt).
    killed = run_process(*argv, timeout=120, NNSTUDY_CRASH_AT="runs/a/seed-0/checkpoint.pt:2")  # whichever job starts first
    assert killed.returncode == -9, killed.stderr
    ckpt = out / "tiny" / "runs" / "a" / "seed-1" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    rc, _, err = cli(*argv)
    line = assert_one_line_error(rc, err, str(ckpt), "damaged", "delete it")
    assert "--force" in line
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ckpt.unlink()  # the fix the message suggests
    rc, _, err = cli(*argv)
    assert rc == 0, err
    assert_store_ok(out)


def test_read_only_output_folder(finished, cli, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        probe = out / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root (or similar): chmod 0o555 does not stop writes here")
        rc, _, err = cli(*run_args(finished.study, out, finished.cache))
        assert_one_line_error(rc, err, str(out), "--out")
    finally:
        out.chmod(0o755)


class _FullDiskOS(types.ModuleType):
    """`os` for nnstudy.files whose rename fails once `budget` files were written."""

    def __init__(self, budget: int):
        super().__init__("os")
        self.budget = budget

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= 1
        return os.replace(src, dst)


@pytest.mark.parametrize("budget", [0, 12], ids=["before-training", "mid-training"])
def test_full_disk(budget, finished, cli, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(files, "os", _FullDiskOS(budget))
    rc, _, err = cli(*run_args(finished.study, out, finished.cache))
    assert_one_line_error(rc, err, "No space left on device", "free space")
    assert not list(out.rglob("*.tmp"))
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # A full disk is not the runs' fault: none is marked failed or done, a rerun resumes them.
        assert {r[0] for r in conn.execute("SELECT status FROM runs")} <= {"pending", "running"}
    monkeypatch.undo()
    rc, _, err = cli(*run_args(finished.study, out, finished.cache))
    assert rc == 0, err
    assert_store_ok(out)


def test_database_locked(finished, cli, monkeypatch):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)",
         str(finished.out / "nnstudy.db")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("NNSTUDY_DB_TIMEOUT", "1")
        rc, _, err = cli(*run_args(finished.study, finished.out, finished.cache))
        assert_one_line_error(rc, err, "nnstudy.db", "locked")
        rc, _, err = cli("list", "--out", str(finished.out))
        assert rc == 0, err  # WAL: reading still works while another process holds the write lock
    finally:
        holder.kill()
        holder.wait()
    assert_store_ok(finished.out)


def test_subprocess_error_shape(finished, tmp_path):
    """The real command: one stderr line, exit status 2, no traceback."""
    study = tmp_path / "bad.toml"
    study.write_text(TINY.replace("lr = 0.05", 'lr = "fast"'))
    proc = subprocess.run([sys.executable, "-m", "nnstudy", *run_args(study, finished.out, finished.cache)],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, str(study), "train.lr")
    assert_store_ok(finished.out)
