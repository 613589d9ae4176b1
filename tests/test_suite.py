"""Suites (issue 26): several studies under one queue, each study's numbers those of the study run alone."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

import pytest
from studies import killed_then_resumed, tiny_study
from test_data import make_idx_set, make_image_folder, make_tar

import nnstudy
from nnstudy.cli import main
from nnstudy.config.suite import is_suite, load_suite
from nnstudy.data import load_dataset
from nnstudy.errors import UserError


def _studies(tmp_path: Path) -> Path:
    """Two tiny digits studies of unequal cost and a suite file listing them; returns the suite file."""
    (tmp_path / "small.toml").write_text(tiny_study(epochs=2).replace('name = "tiny"', 'name = "small"'))
    (tmp_path / "large.toml").write_text(tiny_study(epochs=3, variant_b="model.hidden = [48, 24]")
                                         .replace('name = "tiny"', 'name = "large"'))
    suite = tmp_path / "both.toml"
    suite.write_text('kind = "suite"\nname = "both"\nstudies = ["small.toml", "large.toml"]\n')
    return suite


def _stored(out: Path) -> dict:
    """(study, variant, seed) -> (config hash, every epoch's numbers) as the store holds them."""
    with sqlite3.connect(out / "nnstudy.db") as conn:
        rows = conn.execute("SELECT id, study, variant, seed, config_hash FROM runs").fetchall()
        return {(s, v, seed): (h, conn.execute("SELECT epoch, train_loss, train_acc, test_loss, test_acc FROM epochs "
                                               "WHERE run=? ORDER BY epoch", (rid,)).fetchall())
                for rid, s, v, seed, h in rows}


def _options(tmp_path: Path, out: str, log, progress: bool = False, workers: int = 2) -> dict:
    """`workers` worker processes (0: trained in this process); `progress`: epoch lines in the log (no bars: it is
    no terminal)."""
    pool = {"executor": "process", "workers": workers} if workers else {"executor": "local"}
    return {"out": tmp_path / out, "cache_dir": tmp_path / "cache", "progress": progress, "log": log, **pool}


def test_a_suite_gives_each_study_the_numbers_of_the_study_run_alone(tmp_path):
    suite_file = _studies(tmp_path)
    log = io.StringIO()
    done = nnstudy.load_suite(suite_file).run(**_options(tmp_path, "suite", log, progress=True))
    assert set(done.reports) == {"small", "large"} and all(p["html"].is_file() for p in done.reports.values())
    text = log.getvalue()
    assert "both: one queue of " in text and "from 2 studies" in text
    assert "suite time left" in text  # one time left for the whole, on the epoch lines

    alone = io.StringIO()
    for name in ("small", "large"):
        nnstudy.load_study(tmp_path / f"{name}.toml").run(**_options(tmp_path, "alone", alone))
    suite, separately = _stored(tmp_path / "suite"), _stored(tmp_path / "alone")
    assert len(suite) == 8 and suite == separately  # same identities, same numbers to the last bit


def test_a_rerun_trains_only_what_is_missing(tmp_path):
    """What is trained again does not depend on where: trained in this process, no worker start-up."""
    suite_file = _studies(tmp_path)
    first = io.StringIO()
    nnstudy.load_study(tmp_path / "small.toml").run(**_options(tmp_path, "out", first, workers=0))  # part of the suite
    before = _stored(tmp_path / "out")
    log = io.StringIO()
    nnstudy.load_suite(suite_file).run(**_options(tmp_path, "out", log, workers=0))
    text = log.getvalue()
    assert "small: 4 runs; 4 already finished, 0 to train" in text
    assert "large: 4 runs; 0 already finished, 4 to train" in text
    after = _stored(tmp_path / "out")
    assert {k: v for k, v in after.items() if k[0] == "small"} == before
    again = io.StringIO()
    nnstudy.load_suite(suite_file).run(**_options(tmp_path, "out", again, workers=0))
    assert "training" not in again.getvalue() and _stored(tmp_path / "out") == after


@pytest.mark.slow
def test_a_killed_suite_resumes_to_the_same_numbers(tmp_path):
    """Killed after its 3rd checkpoint (the whole process), then run again: the numbers of an unbroken run."""
    suite_file = _studies(tmp_path)
    killed_then_resumed(suite_file, tmp_path, checkpoint=3)
    nnstudy.load_suite(suite_file).run(**_options(tmp_path, "unbroken", io.StringIO()))
    assert _stored(tmp_path / "out") == _stored(tmp_path / "unbroken")


def test_one_data_folder_serves_mnist_and_an_image_archive(tmp_path):
    data = tmp_path / "data"
    make_idx_set(data / "MNIST" / "raw")
    make_image_folder(tmp_path / "img")
    make_tar(data / "cifar10-jpeg.tar.gz", tmp_path / "img", ".")
    assert load_dataset("mnist", data, tmp_path / "cache", download=False).train_x.shape[0] == 12
    from_folder = load_dataset("imagefolder", data, tmp_path / "cache")
    from_archive = load_dataset("imagefolder", data / "cifar10-jpeg.tar.gz", tmp_path / "cache")
    assert from_folder.classes == ["cat", "dog", "eel"] and from_folder.fingerprint == from_archive.fingerprint
    make_tar(data / "other.tar", tmp_path / "img", ".")  # two archives: which one is meant cannot be guessed
    with pytest.raises(UserError, match="holds 2 archives .*cifar10-jpeg.tar.gz, other.tar.*--data-dir"):
        load_dataset("imagefolder", data, tmp_path / "cache2")


def test_the_coursework_suite_and_its_optional_study(tmp_path, capsys):
    suite = load_suite("coursework")
    assert suite.studies == ["mnist-init", "cifar10-pooling", "mnist-loss", "mnist-activations", "cifar10-cnn"]
    assert suite.chosen(["mnist-activations-1000"])[-1] == "mnist-activations-1000" and suite.replication
    with pytest.raises(UserError, match="--with mnist-init: not an optional study of suite coursework"):
        suite.chosen(["mnist-init"])
    assert is_suite("coursework") and not is_suite("mnist-loss")
    assert main(["init", "coursework", str(tmp_path / "mine.toml")]) == 0  # a suite of your own starts as a copy
    assert is_suite(str(tmp_path / "mine.toml")) and load_suite(str(tmp_path / "mine.toml")).studies == suite.studies
    assert main(["studies"]) == 0
    listed = capsys.readouterr().out
    assert "suites" in listed and "coursework" in listed and "mnist-loss" in listed


@pytest.mark.parametrize("text, message", [
    ('kind = "suite"\nname = "s"\nstudies = []\n', "studies is empty"),
    ('kind = "suite"\nname = "s"\nstudies = ["no-such-study"]\n', "no built-in study named 'no-such-study'"),
    ('kind = "suite"\nname = "s"\nstudies = ["gone.toml"]\n', "study file .*gone.toml not found"),
    ('kind = "suite"\nname = "s"\nstudies = ["mnist-loss", "mnist-loss"]\n', "listed twice"),
    ('kind = "suite"\nname = "s"\nstudies = ["mnist-loss"]\nseeds = [1]\n', "unknown key 'seeds'"),
    ('kind = "suite"\nstudies = ["mnist-loss"]\n', "missing key 'name'"),
    ('kind = "suite"\nname = "s"\nstudies = "mnist-loss"\n', "studies must be a list"),
])
def test_a_bad_suite_file_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"nnstudy: error: {path}: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing written
