"""Crash and resume: SIGKILL a study at chosen and at random points, rerun, and get exactly the clean results.

Crash points: mid-checkpoint write and mid-report via the NNSTUDY_CRASH_AT test hook in
nnstudy.files (the process kills itself just before renaming the N-th such file into
place), and mid-epoch at seeded random training steps (the hook names the step it killed at).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from studies import CliResult, run_args, run_cli, tiny_study

TINY = tiny_study(epochs=4, report_epochs=[2])


def command(study: Path, out: Path, cache: Path, executor: str = "local") -> list[str]:
    """The study's `nnstudy run` as a process (the tests that kill it)."""
    return [sys.executable, "-m", "nnstudy", *run_args(study, out, cache, executor=executor)]


def results(out: Path) -> dict:
    """(variant, seed) -> (status, per-epoch metrics without timings, final predictions)."""
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = conn.execute("SELECT id, variant, seed, status, run_dir FROM runs WHERE study='tiny'").fetchall()
        got = {}
        for rid, variant, seed, status, run_dir in runs:
            epochs = conn.execute("SELECT epoch, train_loss, train_acc, test_loss, test_acc, lr FROM epochs "
                                  "WHERE run=? ORDER BY epoch", (rid,)).fetchall()
            preds = np.load(Path(run_dir) / "predictions.npy")
            got[(variant, seed)] = (status, epochs, preds.tolist())
    return got


def check_like_clean(out: Path, clean: dict) -> None:
    got = results(out)
    assert set(got) == set(clean)
    for key, (status, epochs, preds) in got.items():
        assert status == "done", key
        assert epochs == clean[key][1], f"{key}: resumed metrics differ from the uninterrupted run"
        assert preds == clean[key][2], key
    show = run_cli("show", "tiny", "--out", out, "--json")
    assert show.rc == 0, show.err
    listed = [(r["variant"], r["seed"]) for r in json.loads(show.out)["runs"]]
    assert sorted(listed) == sorted(clean)  # each (variant, seed) exactly once
    assert all(r["status"] == "done" for r in json.loads(show.out)["runs"])
    assert not list(out.rglob("*.tmp")), "temp files of cut-short writes are cleaned up on resume"
    assert (out / "tiny" / "report.html").is_file()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    study = root / "tiny.toml"
    study.write_text(TINY)
    cache = root / "cache"
    rc, _, err = run_cli(*run_args(study, root / "clean", cache))
    assert rc == 0, err
    return study, cache, results(root / "clean")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill_after(cmd: list[str], delay: float, **env: str) -> int:
    """Start cmd, SIGKILL it after `delay` seconds (unless it ended); its worker processes must die too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.monotonic() + delay
    kids: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        kids.update(_children(proc.pid))
        time.sleep(0.05)
    kids.update(_children(proc.pid))
    proc.kill()
    rc = proc.wait()
    end = time.monotonic() + 30  # a worker still importing torch exits once its start-up ends
    while any(Path(f"/proc/{k}").exists() and "zombie" not in Path(f"/proc/{k}/status").read_text() for k in kids):
        assert time.monotonic() < end, f"worker processes {kids} outlived their killed parent"
        time.sleep(0.1)
    return rc


STEPS = 10  # training steps per epoch of TINY: 300 images at batch 32


def _mid_epoch_steps(rng: random.Random, count: int, jobs: int = 2) -> list[int]:
    """Step numbers (counted per process) that fall strictly inside an epoch, never on its first or last step."""
    return [rng.choice([n for n in range(2, jobs * 4 * STEPS) if n % STEPS not in (0, 1)]) for _ in range(count)]


def _assert_mid_epoch(marker: Path) -> None:
    where = marker.read_text().split()  # "train-step epoch E step S of N"
    step, steps = int(where[4]), int(where[6])
    assert steps == STEPS and 1 < step < steps, f"the kill must land inside an epoch, it landed at {where}"


@pytest.mark.slow
def test_sigkill_at_chosen_and_mid_epoch_points_then_resume(setup, tmp_path):
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = command(study, out, cache)
    # Chosen points; after each kill the study is partly done, and the next crash lands later.
    for at in ("checkpoint.pt:2",   # first epoch: seed 0 checkpointed, seed 1 not (the group is split)
               "checkpoint.pt:3",   # mid-checkpoint write: temp file written, not renamed
               "checkpoint.pt:4",   # between two seeds' checkpoints of one epoch
               ):
        proc = subprocess.run(cmd, env={**os.environ, "NNSTUDY_CRASH_AT": at}, capture_output=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (at, proc.stderr[-2000:])
        if at == "checkpoint.pt:3":  # after the first kill, seed 1's folder held only a cut-short write
            assert b"seed 1: its run folder held no checkpoint yet; retraining from scratch" in proc.stderr
    # Mid-epoch, at seeded random training steps; the hook says which step it was.
    for i, step in enumerate(_mid_epoch_steps(random.Random(20240611), 2)):
        marker = tmp_path / f"killed-{i}"
        proc = subprocess.run(cmd, env={**os.environ, "NNSTUDY_CRASH_AT": f"train-step:{step}",
                                        "NNSTUDY_CRASH_ONCE": str(marker)}, capture_output=True, timeout=300)
        if proc.returncode == 0:  # every remaining run finished before that step: nothing was killed
            assert not marker.exists()
            continue
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        _assert_mid_epoch(marker)
    proc = subprocess.run(cmd, env={**os.environ, "NNSTUDY_CRASH_AT": "report.html:1"}, capture_output=True, timeout=300)
    assert proc.returncode in (-signal.SIGKILL, 0)  # killed with every run done, report not yet renamed into place
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    check_like_clean(out, clean)


@pytest.mark.slow
def test_sigkill_process_executor_mid_epoch_then_resume(setup, tmp_path):
    """A worker dies mid-epoch and takes the driver with it (as a kill of the whole study would)."""
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = command(study, out, cache, executor="process")
    for i, step in enumerate(_mid_epoch_steps(random.Random(7), 2, jobs=1)):
        marker = tmp_path / f"killed-{i}"
        rc = _kill_after(cmd, 120, NNSTUDY_CRASH_AT=f"train-step:{step}", NNSTUDY_CRASH_ONCE=str(marker),
                         NNSTUDY_CRASH_PARENT="1")
        assert rc == -signal.SIGKILL and marker.exists()
        _assert_mid_epoch(marker)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    check_like_clean(out, clean)


def run_hooked(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run nnstudy with extra environment (the crash hooks); a crash it survives never shows a traceback."""
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.slow
def test_a_worker_killed_alone_is_retried_from_its_checkpoint(setup, tmp_path):
    """The OS kills one worker (as the OOM killer would): its runs continue in a fresh pool, nothing is lost."""
    study, cache, clean = setup
    out = tmp_path / "out"
    proc = run_hooked(command(study, out, cache, executor="process"),
                   NNSTUDY_CRASH_AT="checkpoint.pt:3", NNSTUDY_CRASH_ONCE=str(tmp_path / "crashed"))
    assert (tmp_path / "crashed").exists(), "the hook must have killed a worker"
    assert proc.returncode == 0, proc.stderr
    assert "a worker process died" in proc.stderr
    check_like_clean(out, clean)


@pytest.mark.slow
def test_runs_whose_worker_dies_twice_are_failed_then_retried(setup, tmp_path):
    """A worker that dies every time (a model too big for memory) fails its runs instead of looping."""
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = command(study, out, cache, executor="process")
    proc = run_hooked(cmd, NNSTUDY_CRASH_AT="checkpoint.pt:3")
    assert proc.returncode == 1, proc.stderr
    assert "worker process died twice" in proc.stderr, proc.stderr
    with sqlite3.connect(out / "nnstudy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        errors = [e for (e,) in conn.execute("SELECT error FROM runs WHERE status='failed'")]
    assert errors and all("died twice" in e for e in errors)
    for extra in (["--retry-failed"], []):  # failed runs resume from their checkpoints; any never started run too
        proc = run_hooked(cmd + extra)
        assert proc.returncode == 0, proc.stderr
    check_like_clean(out, clean)


@pytest.mark.slow
def test_workers_that_die_on_start_up_stop_the_study_with_one_line(setup, tmp_path):
    """Workers that die before any run starts (no run to blame) must not be restarted forever."""
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = command(study, out, cache, executor="process")
    proc = run_hooked(cmd, NNSTUDY_CRASH_AT="job-start:1")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nnstudy: error:")]
    assert len(errors) == 1 and "die before they start any run" in errors[0], proc.stderr
    proc = run_hooked(cmd)
    assert proc.returncode == 0, proc.stderr
    check_like_clean(out, clean)


@pytest.mark.slow
def test_a_worker_death_blames_only_its_own_job(setup, tmp_path):
    """Variant b's worker is killed; variant a's job, in flight beside it, goes on without a retry or a strike."""
    study, cache, clean = setup
    out = tmp_path / "out"
    proc = run_hooked(command(study, out, cache, executor="process") + ["--workers", "2"],
                   NNSTUDY_CRASH_AT="runs/b/seed-0/checkpoint.pt:2", NNSTUDY_CRASH_ONCE=str(tmp_path / "crashed"))
    assert proc.returncode == 0, proc.stderr
    assert "runs/b/seed-0/checkpoint.pt" in (tmp_path / "crashed").read_text()
    assert "2 unfinished run(s) of its job continue" in proc.stderr, proc.stderr
    with sqlite3.connect(out / "nnstudy.db") as conn:
        attempts = dict(((v, s), n) for v, s, n in conn.execute("SELECT variant, seed, attempts FROM runs"))
    assert attempts == {("a", 0): 1, ("a", 1): 1, ("b", 0): 2, ("b", 1): 2}
    check_like_clean(out, clean)


# The tests that kill nothing share one worker, so the module's clean run is made once for them, not on each worker
# (the slow kill tests stay free to spread).
SHARES_THE_CLEAN_RUN = pytest.mark.xdist_group("resume_clean")


def run_clean(*argv) -> CliResult:
    """`nnstudy ARGV` in this process (nothing here is killed); a crash it survives never shows a traceback."""
    result = run_cli(*argv)
    assert "Traceback" not in result.err, result.err
    return result


def _without_variant_b(text: str) -> str:
    return text.split("[variants.b]")[0]


@SHARES_THE_CLEAN_RUN
def test_a_variant_removed_then_put_back_is_restored_with_its_metrics(setup, tmp_path):
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = run_args(study, out, cache)
    assert run_clean(*cmd).rc == 0
    full = study.read_text()
    short = tmp_path / "tiny.toml"
    short.write_text(_without_variant_b(full))
    assert run_clean(*run_args(short, out, cache)).rc == 0
    short.write_text(full)
    proc = run_clean(*run_args(short, out, cache))
    assert proc.rc == 0, proc.err
    assert "b seed 0: not in the store, but its run folder holds its checkpoint" in proc.err
    assert "b seed 0: done" in proc.err and "restored all 4 epochs from its checkpoint, none retrained" in proc.err
    check_like_clean(out, clean)

    # Put back with another config: the old folder must not be resumed, the run trains afresh.
    short.write_text(_without_variant_b(full))
    assert run_clean(*run_args(short, out, cache)).rc == 0
    short.write_text(full.replace("model.hidden = [24]", "model.hidden = [20]"))
    proc = run_clean(*run_args(short, out, cache))
    assert proc.rc == 0, proc.err
    assert "b seed 1: its run folder held another config's results; retraining from scratch" in proc.err
    assert "b seed 1: done" in proc.err and "4 epochs trained" in proc.err
    got = results(out)
    assert got[("a", 0)] == clean[("a", 0)]
    assert got[("b", 0)][0] == "done" and len(got[("b", 0)][1]) == 4 and got[("b", 0)][1] != clean[("b", 0)][1]


@SHARES_THE_CLEAN_RUN
def test_a_deleted_store_is_rebuilt_from_the_run_folders(setup, tmp_path):
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = run_args(study, out, cache)
    assert run_clean(*cmd).rc == 0
    for f in out.glob("nnstudy.db*"):
        f.unlink()
    proc = run_clean(*cmd)
    assert proc.rc == 0, proc.err
    assert proc.err.count("none retrained") == 4, proc.err
    check_like_clean(out, clean)


@SHARES_THE_CLEAN_RUN
def test_a_done_run_without_its_metrics_is_reopened(setup, tmp_path):
    study, cache, clean = setup
    out = tmp_path / "out"
    cmd = run_args(study, out, cache)
    assert run_clean(*cmd).rc == 0
    with sqlite3.connect(out / "nnstudy.db") as conn:
        (rid,) = conn.execute("SELECT id FROM runs WHERE variant='a' AND seed=1").fetchone()
        conn.execute("DELETE FROM epochs WHERE run=?", (rid,))
    (out / "tiny" / "runs" / "b" / "seed-0" / "predictions.npy").unlink()
    proc = run_clean(*cmd)
    assert proc.rc == 0, proc.err
    assert "a seed 1: marked done but its record is incomplete; restoring it from its checkpoint" in proc.err
    assert "b seed 0: marked done but its record is incomplete" in proc.err
    check_like_clean(out, clean)
