"""Executors: the same study gives the same runs in-process, in a process pool and on Ray."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

import nnstudy
from nnstudy.cli import main
from studies import digits_cnn, run_args, run_cli, tiny_study

STUDY = tiny_study(epochs=2, variant_b='model.activation = "tanh"')


def _run(tmp_path, executor, out_name=None):
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    out = tmp_path / (out_name or f"out-{executor}")
    workers = ["--workers", "2"] if executor == "process" else []
    assert run_cli(*run_args(study, out, tmp_path / "cache", *workers, executor=executor)).rc == 0
    return _shown(out)


def _shown(out) -> dict:
    """(variant, seed) -> the run as `nnstudy show --json` lists it."""
    rc, shown, err = run_cli("show", "tiny", "--out", out, "--json")
    assert rc == 0, err
    return {(r["variant"], r["seed"]): r for r in json.loads(shown)["runs"]}


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["status"] == b[key]["status"] == "done"
        for metric in ("test_acc", "test_loss", "train_acc", "train_loss"):
            assert a[key][metric] == pytest.approx(b[key][metric], rel=1e-4, abs=1e-6), (key, metric)


def test_process_pool_gives_the_local_results(tmp_path):
    _same(_run(tmp_path, "local"), _run(tmp_path, "process"))


def test_a_single_stack_is_split_so_that_no_worker_idles(tmp_path):
    """Two learning rates form one stack of 4 runs; each of two workers gets one seed of each, numbers unchanged."""
    study = tmp_path / "tiny.toml"
    study.write_text(tiny_study(epochs=2, variant_b="train.lr = 0.1"))
    rc, _, err = run_cli(*run_args(study, tmp_path / "one", tmp_path / "cache"))
    assert rc == 0 and "training 1 job(s) on cpu with the local executor: a+b [4 runs]" in err, err
    rc, _, err = run_cli(*run_args(study, tmp_path / "two", tmp_path / "cache", "--workers", 2, executor="process"))
    assert rc == 0 and "training 2 job(s)" in err and err.count("a+b [2 runs]") >= 2, err
    shown = [_shown(tmp_path / out) for out in ("one", "two")]
    _same(*shown)


@pytest.mark.slow
def test_a_batch_norm_cnn_gives_the_same_numbers_whichever_way_the_plan_splits_its_seeds(tmp_path):
    """A CNN with batch norm (6 channels a seed: a tail in torch's batch-norm kernel) on two workers, each on one
    thread: three seeds train as [0, 2] + [1] (seed 1 beside a copy of itself), five as [0, 2, 4] + [1, 3]. Seeds
    0-2 must store the same numbers bit for bit either way."""
    stored = {}
    for seeds, jobs in (((0, 1, 2), ["a [seed 0,2]", "a [seed 1 beside a copy]"]),
                        ((0, 1, 2, 3, 4), ["a [seed 0,2,4]", "a [seed 1,3]"])):
        study = tmp_path / f"bn{len(seeds)}.toml"
        study.write_text(digits_cnn("bn", '[variants.a]\nmodel.norm = "batch"\nmodel.channels = [6]\n', seeds=seeds))
        out = tmp_path / f"out{len(seeds)}"
        rc, _, err = run_cli(*run_args(study, out, tmp_path / "cache", "--workers", 2, executor="process"))
        assert rc == 0 and all(f"{job} " in err for job in jobs), err
        stored[len(seeds)] = {r.seed: ([(e.train_loss, e.train_acc, e.test_loss, e.test_acc) for e in r.history],
                                       {k: v.tolist() for k, v in r.predictions.items()})
                              for r in nnstudy.open_results("bn", out).study.runs if r.seed < 3}
    assert stored[3] == stored[5] and len(stored[3]) == 3


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_gives_the_local_results(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'nnstudy[ray]'")
    # --executor ray without an address starts a local Ray, even where a dead cluster's address was left
    # behind (Ray alone would try to join it). A short temp dir: Ray's socket paths have a length limit.
    temp = Path(tempfile.mkdtemp(prefix="nnray", dir="/tmp"))
    (temp / "ray").mkdir()
    (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        _same(_run(tmp_path, "local"), _run(tmp_path, "ray"))
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.parametrize("flags, says", [
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: no Ray cluster answers there"),
    (["--executor", "local", "--cpus-per-job", "2"], "are for --executor ray"),
])
def test_executor_is_reached_before_anything_is_written(tmp_path, capsys, monkeypatch, flags, says):
    """A bad Ray address (or a Ray option without Ray) is one line, exit 2, and no output folder made."""
    if "ray" in flags:
        pytest.importorskip("ray", reason="Ray is optional: pip install 'nnstudy[ray]'")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no Ray token here: nothing sets RAY_AUTH_MODE for later tests
    study, out = tmp_path / "tiny.toml", tmp_path / "out"
    study.write_text(STUDY)
    assert main(["run", str(study), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnstudy: error: ") and says in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_task_whose_worker_dies_is_retried_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'nnstudy[ray]'")
    local = _run(tmp_path, "local")
    # Ray workers inherit this environment: the first worker to write its 3rd checkpoint is SIGKILLed.
    monkeypatch.setenv("NNSTUDY_CRASH_AT", "checkpoint.pt:3")
    monkeypatch.setenv("NNSTUDY_CRASH_ONCE", str(tmp_path / "crashed"))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        retried = _run(tmp_path, "ray", out_name="out-ray-crash")
    finally:
        ray.shutdown()
    assert (tmp_path / "crashed").exists(), "the hook must have killed a Ray worker"
    _same(local, retried)


def test_pool_workers_get_their_share_of_cores_but_one_thread_for_small_steps(monkeypatch):
    from types import SimpleNamespace

    from nnstudy.executors.local import worker_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)

    def job(batch_size, seeds):
        return SimpleNamespace(config={"train": {"batch_size": batch_size}}, seeds=list(range(seeds)))

    assert worker_threads(job(64, 1), workers=1) == 8
    assert worker_threads(job(64, 1), workers=3) == 2
    assert worker_threads(job(4, 1), workers=1) == 1  # 4 images a step: a second thread only costs
    assert worker_threads(job(4, 5), workers=2) == 4  # 5 seeds stacked: 20 images a step
    assert worker_threads(job(64, 1), workers=16) == 1


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs_its_study_once(tmp_path):
    """The README's API example pasted into a file: process-pool workers must not re-run the script."""
    import subprocess
    import sys

    script = tmp_path / "example.py"
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    script.write_text(
        "import nnstudy\n"
        f"study = nnstudy.load_study({str(study)!r})\n"
        "print('script body ran')\n"
        f"results = study.run({str(tmp_path / 'out')!r}, cache_dir={str(tmp_path / 'cache')!r}, executor='process',\n"
        "                    workers=2, progress=False)\n"
        "print(sorted(set(results.runs()['status'])))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("script body ran") == 1, proc.stdout
    assert "['done']" in proc.stdout


def test_a_jobs_library_versions_name_torchvision_as_its_package_does_without_importing_it():
    import subprocess
    import sys

    import torchvision

    from nnstudy.executors.job import library_versions

    assert library_versions()["torchvision"] == torchvision.__version__
    code = "import sys\nfrom nnstudy.executors.job import library_versions\nlibrary_versions()\nprint('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
