"""A real Ray cluster on this machine, started the way an operator starts one.

A head and a second node come up with `ray start` (token authentication, as
Ray >= 2.59 sets up local clusters), each in its own empty working directory:
the driver's relative --out and --cache-dir do not exist there, so the nodes
reach only the shared checkpoint folder. A study run with `--ray-address`
gives the numbers of a local run, also when the second node dies mid-job; a
job that loses its node twice is failed with that reason. Every node is
stopped at the end, also when a test fails. Skipped only without Ray.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from studies import tiny_study

# Ray clusters start and lose nodes: slow, and one worker runs them all (pytest -n: --dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

pytest.importorskip("ray", reason="Ray is optional: pip install 'nnstudy[ray]'")

RAY = str(Path(sys.executable).with_name("ray"))
EPOCHS = 30  # long enough to stop a node mid-job; a few seconds a job
STUDY = tiny_study(epochs=EPOCHS, variant_b='model.hidden = [17]')  # a job of its own, as costly as a's


class Cluster:
    """Nodes started with `ray start --block`, each in its own process group, all under one temp folder."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(exist_ok=True)
        # Ray's sockets live under its temp dir and a socket path may not pass 107 characters.
        self.temp = Path(tempfile.mkdtemp(prefix="nnray", dir="/tmp"))
        self.token = root / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def env(self) -> dict:
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                "RAY_USAGE_STATS_ENABLED": "0",
                # The head notices a dead node in ~2 s (Ray's default: ~15 s).
                "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4"}

    def start(self, cpus: int, head: bool = False) -> subprocess.Popen:
        name = "head" if head else f"node{len(self.nodes)}"
        cwd = self.root / name
        cwd.mkdir()
        where = (["--head", "--port", str(self.port), "--temp-dir", str(self.temp), "--include-dashboard", "false",
                  "--dashboard-port", str(_free_port())] if head else ["--address", self.address])
        node = subprocess.Popen(
            [RAY, "start", *where, "--num-cpus", str(cpus), "--object-store-memory", str(100 * 2**20),
             "--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats", "--block"],
            cwd=cwd, env=self.env(), start_new_session=True, stdout=open(self.root / f"{name}.log", "w"),
            stderr=subprocess.STDOUT)
        self.nodes.append(node)
        self.wait_for(sum(n.poll() is None for n in self.nodes))
        return node

    def wait_for(self, alive: int) -> None:
        """Until `alive` nodes have joined (a driver sees them)."""
        code = ("import ray, time, sys\n"
                f"ray.init(address={self.address!r}, log_to_driver=False)\n"
                "for _ in range(240):\n"
                f"    if sum(n['Alive'] for n in ray.nodes()) >= {alive}: sys.exit(0)\n"
                "    time.sleep(0.25)\n"
                "sys.exit(1)\n")
        for _ in range(3):  # the head's control service may not answer yet
            if subprocess.run([sys.executable, "-c", code], env=self.env(), capture_output=True,
                              timeout=120).returncode == 0:
                return
            time.sleep(1)
        raise AssertionError(f"{alive} Ray node(s) did not come up; see {self.root}/*.log")

    def kill(self, node: subprocess.Popen) -> None:
        """The node dies at once: its raylet and agents (its process group); its workers die with the raylet."""
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()

    def stop(self) -> None:
        for node in self.nodes:  # a test cluster needs no graceful stop (`ray start --block` takes ~30 s)
            if node.poll() is None:
                self.kill(node)
        for pid in _pids_mentioning(str(self.temp)):  # workers, in process groups of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A head and a second node, one CPU each: one job on each."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start(cpus=1, head=True)
        cluster.second = cluster.start(cpus=1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


def nnstudy(cwd: Path, *args: str, env: dict | None = None, timeout: float = 300, background: bool = False):
    cmd = [sys.executable, "-m", "nnstudy", *args]
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def driver_env(cluster: Cluster) -> dict:
    """The driver holds the cluster's token but sets no RAY_AUTH_MODE: nnstudy must connect with the token by itself."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, "RAY_AUTH_TOKEN_PATH": str(cluster.token)}


def runs(cwd: Path, out: str) -> dict:
    show = nnstudy(cwd, "show", "tiny", "--out", out, "--json", timeout=60)
    assert show.returncode == 0, show.stderr
    return {(r["variant"], r["seed"]): r for r in json.loads(show.stdout)["runs"]}


def epochs(cwd: Path, out: str) -> dict:
    """(variant, seed) -> every epoch's metrics, without timings."""
    import sqlite3
    with sqlite3.connect(cwd / out / "nnstudy.db") as conn:
        rows = conn.execute("SELECT r.variant, r.seed, e.epoch, e.train_loss, e.train_acc, e.test_loss, e.test_acc "
                            "FROM epochs e JOIN runs r ON r.id = e.run ORDER BY r.variant, r.seed, e.epoch").fetchall()
    got: dict = {}
    for variant, seed, *metrics in rows:
        got.setdefault((variant, seed), []).append(tuple(metrics))
    return got


def same_as_local(got: dict, local: dict) -> None:
    """Equal to the local run up to float noise: a Ray job trains on 1 thread, the local one on all cores."""
    assert got.keys() == local.keys()
    for key, run in got.items():
        assert run["status"] == "done", (key, run["error"])
        for metric in ("test_acc", "test_loss", "train_acc", "train_loss"):
            assert run[metric] == pytest.approx(local[key][metric], rel=1e-4, abs=1e-6), (key, metric)


def checkpoint_epoch(folder: Path) -> int:
    from nnstudy.training.checkpoint import checkpoint_epoch as epoch_of, resume_checkpoint
    try:
        return epoch_of(resume_checkpoint(folder))
    except Exception:  # caught between two renames: ask again
        return 0


def wait_until(condition, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the study ended before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.fixture
def driver(tmp_path):
    """The driver's working directory, holding the study file; the output folder will be ./out, relative."""
    d = tmp_path / "driver"
    d.mkdir()
    (d / "tiny.toml").write_text(STUDY)
    return d


def test_a_cluster_that_wants_a_token_is_one_clear_line_without_it(two_nodes, driver, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token here, no token variables
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    start = time.monotonic()
    proc = nnstudy(driver, "run", "tiny.toml", "--out", "out", "--quiet", "--ray-address", two_nodes.address,
                   env={**env, "HOME": str(home)}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nnstudy: error: the Ray cluster at") and "RAY_AUTH_MODE=token" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 15, "no 20-second retry loop"

    wrong = nnstudy(driver, "run", "tiny.toml", "--out", "out", "--quiet", "--ray-address", f"127.0.0.1:{_free_port()}",
                    env=driver_env(two_nodes), timeout=60)
    assert wrong.returncode == 2 and "no Ray cluster answers there" in wrong.stderr, wrong.stderr


def test_study_on_a_two_node_cluster_equals_a_local_run_even_when_a_node_dies(two_nodes, driver, tmp_path):
    cluster = two_nodes
    local = nnstudy(driver, "run", "tiny.toml", "--out", "local", "--cache-dir", "cache", "--quiet",
                    "--executor", "local", timeout=300)
    assert local.returncode == 0, local.stderr
    reference = runs(driver, "local")

    shared = tmp_path / "shared-checkpoints"  # the folder every node reaches (NFS on a real cluster)
    run = ["run", "tiny.toml", "--cache-dir", "cache", "--quiet", "--ray-address", cluster.address]

    # 1) Undisturbed: one job per node, data from the object store, only checkpoints written on the nodes.
    proc = nnstudy(driver, *run, "--out", "out", "--checkpoint-dir", f"file://{shared}/a", env=driver_env(cluster))
    assert proc.returncode == 0, proc.stderr
    calm = runs(driver, "out")
    same_as_local(calm, reference)
    assert {r["settings"]["threads"] for r in calm.values()} == {1}  # --cpus-per-job 1: one torch thread
    for variant in ("a", "b"):
        for seed in (0, 1):
            assert (shared / "a" / "tiny" / variant / f"seed-{seed}" / "checkpoint.pt").is_file()
            assert not list((driver / "out" / "tiny" / "runs" / variant / f"seed-{seed}").glob("checkpoint*"))
    for node in ("head", "node1"):
        assert not any((cluster.root / node).iterdir()), f"{node} wrote into its working directory"

    # 2) The second node dies mid-job: its job resumes from its last checkpoint on the head.
    ckpt = shared / "b"
    proc = nnstudy(driver, *run, "--out", "out-killed", "--checkpoint-dir", str(ckpt), env=driver_env(cluster),
                   background=True)
    folders = [ckpt / "tiny" / v / "seed-0" for v in ("a", "b")]
    wait_until(lambda: all(checkpoint_epoch(f) >= 2 for f in folders), "both jobs had 2 epochs checkpointed", proc)
    cluster.kill(cluster.second)
    out, err = proc.communicate(timeout=300)
    print("\n".join(line for line in err.splitlines() if "died" in line or "resumed" in line))  # shown by -s
    assert proc.returncode == 0, err
    assert "a Ray worker or its node died; 2 unfinished run(s) of its job continue from their last checkpoint" in err
    assert "resumed from its epoch-" in err, err
    same_as_local(runs(driver, "out-killed"), reference)
    assert epochs(driver, "out-killed") == epochs(driver, "out"), "bit for bit the undisturbed cluster run"
    assert not list(ckpt.rglob("*.tmp")), "a write the dead node cut short is cleaned up"


def test_a_job_that_loses_its_node_twice_is_failed_with_that_reason(cluster, driver, tmp_path):
    (driver / "tiny.toml").write_text(STUDY.split("[variants.b]")[0])  # one job: variant a, seeds 0 and 1
    cluster.start(cpus=0, head=True)  # the head trains nothing: jobs go where the test can kill them
    node = cluster.start(cpus=1)
    ckpt = tmp_path / "shared-checkpoints"
    folder = ckpt / "tiny" / "a" / "seed-0"
    proc = nnstudy(driver, "run", "tiny.toml", "--out", "out", "--cache-dir", "cache", "--quiet",
                   "--ray-address", cluster.address, "--checkpoint-dir", str(ckpt), env=driver_env(cluster),
                   background=True)
    for death in (1, 2):
        reached = checkpoint_epoch(folder)
        wait_until(lambda: checkpoint_epoch(folder) >= reached + 2, f"the job trained on node {death}", proc)
        cluster.kill(node)
        if death == 1:
            node = cluster.start(cpus=1)  # the retried job waits for it
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # runs failed: the study ends with its report
    assert "a Ray worker or its node died; 2 unfinished run(s) of its job continue" in err, err
    for seed in (0, 1):
        assert f"a seed {seed}: failed (its Ray worker or its node died twice)" in err, err
        run = runs(driver, "out")[("a", seed)]
        assert run["status"] == "failed" and "its Ray worker or its node died twice" in run["error"]
