"""Idempotent reruns, failed runs, Ctrl-C, and the list/show/report commands on a stored study."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from studies import run_args, tiny_study

from nnstudy.cli import main

TINY = tiny_study(epochs=3)


def runs(out: Path) -> dict:
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT variant, seed, id, status, started, attempts, error, traceback FROM runs").fetchall()
        epochs = {r[2]: conn.execute("SELECT epoch, train_loss, test_loss, test_acc FROM epochs WHERE run=? ORDER BY epoch",
                                     (r[2],)).fetchall() for r in rows}
    return {(r[0], r[1]): {"id": r[2], "status": r[3], "started": r[4], "attempts": r[5], "error": r[6],
                           "traceback": r[7], "epochs": epochs[r[2]]} for r in rows}


def test_rerun_change_and_force(cli, capsys, tmp_path):
    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    study.write_text(TINY)
    assert cli(*run_args(study, out, cache))[0] == 0
    first = runs(out)
    assert {r["status"] for r in first.values()} == {"done"} and len(first) == 4

    rc, _, err = cli(*run_args(study, out, cache))
    assert rc == 0 and "0 to train" in err and "training" not in err
    assert runs(out) == first

    study.write_text(TINY.replace("model.hidden = [24]", "model.hidden = [20]"))
    rc, _, err = cli(*run_args(study, out, cache))
    assert rc == 0 and "2 to train" in err
    second = runs(out)
    for key, row in second.items():
        assert row["status"] == "done"
        if key[0] == "a":
            assert row == first[key]  # untouched
        else:
            assert row["id"] == first[key]["id"] and row["started"] > first[key]["started"]
            assert row["epochs"] != first[key]["epochs"]

    rc, _, err = cli(*run_args(study, out, cache, "--force"))
    assert rc == 0 and "4 to train" in err
    forced = runs(out)
    assert all(forced[k]["started"] > second[k]["started"] for k in forced)
    assert all(forced[k]["epochs"] == second[k]["epochs"] for k in forced)  # same config, same numbers


FLAKY_MODEL = """
import torch
from torch import nn


class Flaky(nn.Module):
    \"\"\"An MLP that raises on its `fail_at`-th training forward pass (a bug that shows mid-training).\"\"\"

    def __init__(self, input_shape, n_classes, fail_at):
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Linear(16, n_classes))
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x):
        self.calls += self.training
        if self.fail_at and self.calls >= self.fail_at:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.net(x)


def make(input_shape, n_classes, fail_at=0):
    return Flaky(input_shape, n_classes, fail_at)
"""


def test_failed_runs_and_retry(cli, capsys, tmp_path):
    # A user's model that breaks mid-training: valid config, passes the one-batch check, fails in epoch 2.
    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    (tmp_path / "flaky_model.py").write_text(FLAKY_MODEL)
    broken = '\n[variants.user]\nmodel.kind = "python"\nmodel.factory = "flaky_model:make"\nmodel.args = {fail_at = 15}\n'
    study.write_text(TINY + broken)
    rc, stdout, err = cli(*run_args(study, out, cache))
    assert rc == 1
    assert "variant user: torch.func cannot stack this model" not in err  # a plain module stacks
    assert "2 run(s) failed" in err and "--retry-failed" in err and "Traceback" not in err
    assert "report:" in stdout
    first = runs(out)
    for key, row in first.items():
        if key[0] == "user":
            assert row["status"] == "failed"
            assert "CUDA out of memory (simulated)" in row["error"]
            assert "Traceback" in row["traceback"]
        else:
            assert row["status"] == "done" and row["error"] is None
    assert (out / "tiny" / "report.html").is_file()

    rc, _, err = cli(*run_args(study, out, cache))  # a plain rerun leaves failed runs alone
    assert rc == 1 and "0 to train" in err and "2 failed" in err
    assert runs(out) == first

    rc, _, err = cli(*run_args(study, out, cache, "--retry-failed"))
    assert rc == 1 and "2 to train" in err
    retried = runs(out)
    for key, row in retried.items():
        if key[0] == "user":
            assert row["attempts"] == first[key]["attempts"] + 1 and row["status"] == "failed"
        else:
            assert row == first[key]

    study.write_text(TINY + broken.replace("fail_at = 15", "fail_at = 0"))  # the fix
    rc, _, err = cli(*run_args(study, out, cache))
    assert rc == 0, err
    assert {r["status"] for r in runs(out).values()} == {"done"}


def test_a_variant_that_breaks_on_one_batch_stops_before_training(cli, capsys, tmp_path):
    """A CNN whose kernel-5 blocks shrink 8x8 digits to nothing: one line naming the variant, nothing trained."""
    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    study.write_text(TINY + '\n[variants.cnn]\nmodel.kind = "cnn"\n')
    rc, _, err = cli(*run_args(study, out, cache))
    assert rc == 2
    lines = [line for line in err.splitlines() if line.startswith("nnstudy: error:")]
    assert len(lines) == 1 and "variants.cnn: model: 2 conv blocks with kernel 5 shrink 8x8 images to nothing" in lines[0]
    assert not (out / "nnstudy.db").exists() or not runs(out)


def test_list_show_report(cli, capsys, tmp_path):
    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    study.write_text(TINY)
    assert cli(*run_args(study, out, cache))[0] == 0
    stored = runs(out)

    capsys.readouterr()
    assert main(["list", "--out", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["studies"]
    assert [(r["study"], r["runs"], r["done"]) for r in rows] == [("tiny", 4, 4)]
    assert main(["list", "--out", str(out)]) == 0
    assert "tiny: 4 runs (4 done)" in capsys.readouterr().out

    assert main(["show", "tiny", "--out", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["study"] == "tiny" and len(shown["runs"]) == 4
    for r in shown["runs"]:
        row = stored[(r["variant"], r["seed"])]
        assert r["status"] == "done" and r["epochs"] == 3 and r["test_acc"] == row["epochs"][-1][3]
        assert {k: r["settings"][k] for k in ("device", "precision", "compile", "vectorized")} == \
            {"device": "cpu", "precision": "fp32", "compile": False, "vectorized": True}
        assert r["settings"]["threads"] >= 1
    assert main(["show", "tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count(" done ") == 4

    report = out / "tiny" / "report.html"
    report.unlink()
    assert main(["report", "tiny", "--out", str(out), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert Path(paths["html"]) == report.resolve() or Path(paths["html"]) == report
    assert report.is_file() and report.stat().st_size > 1000
    assert runs(out) == stored  # nothing trained

    # Settings are facts of each run: rerunning variant a unstacked records that for a's runs only.
    study.write_text(TINY.replace("[variants.a]", "[variants.a]\ntrain.lr = 0.04"))
    assert cli(*run_args(study, out, cache, "--no-vectorize"))[0] == 0
    assert main(["show", "tiny", "--out", str(out), "--json"]) == 0
    vectorized = {(r["variant"], r["seed"]): r["settings"]["vectorized"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert vectorized == {("a", 0): False, ("a", 1): False, ("b", 0): True, ("b", 1): True}
    config = json.loads((out / "tiny" / "runs" / "a" / "seed-0" / "config.json").read_text())
    assert config["settings"]["vectorized"] is False and config["settings"]["device"] == "cpu"


@pytest.mark.slow
def test_ctrl_c_then_resume(tmp_path):
    """Ctrl-C as a terminal sends it (to the process group: driver and pool workers), to a study started with
    SIGINT ignored, as a script's `cmd &` starts it (Python then sets no handler: the interrupt was lost)."""
    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    study.write_text(TINY.replace("epochs = 3", "epochs = 60"))  # seconds of training left when Ctrl-C is sent
    cmd = [sys.executable, "-m", "nnstudy", "run", str(study), "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    db = out / "nnstudy.db"
    deadline = time.monotonic() + 120
    while True:  # wait until training is under way: every run has an epoch stored (both workers past start-up)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    if conn.execute("SELECT COUNT(DISTINCT run) FROM epochs").fetchone()[0] == 4:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = runs(out)
    assert sum(len(r["epochs"]) for r in stopped.values()) < 4 * 60, "Ctrl-C must land before the study ends"
    assert "Traceback" not in err
    assert "interrupted" in err and "run the same command again to resume" in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = subprocess.run(cmd + ["--executor", "local"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = runs(out)
    assert {r["status"] for r in resumed.values()} == {"done"}
    clean = tmp_path / "clean"
    assert subprocess.run([*cmd[:6], str(clean), *cmd[7:], "--executor", "local"], timeout=300).returncode == 0
    for key, row in runs(clean).items():  # the interrupted study ends with the uninterrupted numbers
        assert resumed[key]["epochs"] == row["epochs"], key


def test_a_seed_whose_files_cannot_be_written_fails_alone(cli, capsys, tmp_path, monkeypatch):
    """Writing seed 1's run folder fails: seed 0 of the same job stays done; a retry restores seed 1 untrained."""
    import errno

    from nnstudy.driver import run_life
    from nnstudy.errors import UserError

    study, out, cache = tmp_path / "tiny.toml", tmp_path / "out", tmp_path / "cache"
    study.write_text(TINY)
    real = run_life.files.write_json

    def flaky(path, obj):
        if "seed-1" in str(path) and path.name == "metrics.json":
            raise UserError(f"cannot write {path}: I/O error") from OSError(errno.EIO, "I/O error")
        return real(path, obj)

    monkeypatch.setattr(run_life.files, "write_json", flaky)
    rc, _, err = cli(*run_args(study, out, cache))
    assert rc == 1, err
    stored = runs(out)
    assert {k: r["status"] for k, r in stored.items()} == {("a", 0): "done", ("a", 1): "failed",
                                                           ("b", 0): "done", ("b", 1): "failed"}
    assert "writing its run folder failed" in stored[("a", 1)]["error"]
    assert len(stored[("a", 0)]["epochs"]) == 3

    monkeypatch.setattr(run_life.files, "write_json", real)
    rc, _, err = cli(*run_args(study, out, cache, "--retry-failed"))
    assert rc == 0, err
    assert err.count("restored all 3 epochs from its checkpoint, none retrained") == 2, err
    retried = runs(out)
    assert {r["status"] for r in retried.values()} == {"done"}
    assert retried[("a", 0)] == stored[("a", 0)]
    clean = tmp_path / "clean"
    assert cli(*run_args(study, clean, cache))[0] == 0
    for key, row in runs(clean).items():
        assert retried[key]["epochs"] == row["epochs"], key


def test_variants_that_differ_only_in_values_train_as_one_stack(cli, capsys, tmp_path):
    """init, loss and learning-rate variants share one stack (each run with its own numbers); an activation
    variant trains apart (a stack of mixed layers costs more than its parts: cost.MIXED_SPAN); a shape change
    gets its own."""
    study, cache = tmp_path / "tiny.toml", tmp_path / "cache"
    study.write_text(TINY + '\n[variants.xavier]\nmodel.init = "xavier"\n\n[variants.mse]\ntrain.loss = "mse"\n'
                     '\n[variants.tanh]\nmodel.activation = "tanh"\n\n[variants.slow]\ntrain.lr = 0.02\n')
    rc, _, err = cli(*run_args(study, tmp_path / "together", cache))
    assert rc == 0, err
    assert "a+xavier+mse+slow [8 runs]" in err and "tanh [seed 0,1]" in err and "b [seed 0,1]" in err
    rc, _, err = cli(*run_args(study, tmp_path / "apart", cache, "--no-stack-variants"))
    assert rc == 0 and "a+xavier" not in err and "xavier [seed 0,1]" in err
    together, apart = runs(tmp_path / "together"), runs(tmp_path / "apart")
    assert together.keys() == apart.keys() and len(together) == 12
    for key in together:  # every network keeps its own initialisation, data order and numbers
        for mine, alone in zip(together[key]["epochs"], apart[key]["epochs"]):
            assert mine[0] == alone[0] and all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7) for x, y in zip(mine[1:], alone[1:])), key
    for variant in ("a", "xavier", "mse"):
        config = json.loads((tmp_path / "together" / "tiny" / "runs" / variant / "seed-1" / "config.json").read_text())
        assert config["variant"] == variant and config["settings"]["stacked_with"] == "a+xavier+mse+slow"
    assert json.loads((tmp_path / "together" / "tiny" / "runs" / "mse" / "seed-0" / "config.json").read_text())["train"]["loss"] == "mse"
    report = (tmp_path / "together" / "tiny" / "report.html").read_text()
    assert "one stack with" in report and "a+xavier+mse+slow" in report


@pytest.mark.slow
def test_share_cores_gives_a_finished_jobs_core_to_the_one_still_running(tmp_path):
    """With --share-cores the long job takes the freed core between epochs, and its runs record it."""
    import os

    if (os.cpu_count() or 1) < 2:
        import pytest
        pytest.skip("needs two cores")
    study, out = tmp_path / "tiny.toml", tmp_path / "out"
    # b runs for seconds (150 epochs of 38 small steps), a for a fraction of one: a's core frees up mid-b.
    study.write_text(TINY.replace("epochs = 3", "epochs = 1").replace(
        "[variants.b]\nmodel.hidden = [24]", "[variants.b]\ntrain.epochs = 150\ntrain.batch_size = 8"))
    cmd = [sys.executable, "-m", "nnstudy", "run", str(study), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
           "--executor", "process", "--workers", "2", "--share-cores"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "most expensive first: b [seed 0,1]; a [seed 0,1]" in proc.stderr
    line = next(line for line in proc.stderr.splitlines() if "thread(s) from epoch" in line)
    assert line.strip().startswith("b [seed 0,1]: 2 thread(s) from epoch"), proc.stderr
    epoch = int(line.split("from epoch ")[1].split()[0])
    config = json.loads((out / "tiny" / "runs" / "b" / "seed-0" / "config.json").read_text())
    assert config["settings"]["threads"] == 1 and config["settings"]["threads_from_epoch"] == {str(epoch): 2}
    # The epoch lines show the new thread count from that epoch on.
    assert f"b [seed 0,1] epoch {epoch}/150" in proc.stderr and "on 2 thread(s)" in proc.stderr.split(line)[1]
