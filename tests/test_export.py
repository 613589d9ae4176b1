"""`nnstudy export`: a small stored study read back from real MLflow stores and real TensorBoard event files.

One tiny study (digits, 2 variants x 2 seeds x 2 epochs, with a claim) is trained once for the module;
MLflow is read back through its own client from a local SQLite store and from a tracking server this
module starts on localhost, TensorBoard through its own event reader.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nnstudy.cli import main
from nnstudy.stats.claims import check_claims
from nnstudy.stats.study import compare_study
from nnstudy.store import Store, load_results
from studies import tiny_study

# One worker for the module: its tests share one module-scoped study, built once rather than on each worker.
pytestmark = pytest.mark.xdist_group("export")

mlflow_tracking = pytest.importorskip("mlflow.tracking")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

CLAIM = """
[[claims]]
text = "A wider hidden layer gives a higher test accuracy."
source = "test_export.py"
metric = "test_acc"
variant = "b"
baseline = "a"
direction = "greater"
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """The stored study: its output folder and its results as the store has them."""
    root = tmp_path_factory.mktemp("export")
    toml, out = root / "tiny.toml", root / "out"
    toml.write_text(tiny_study(epochs=2) + CLAIM)
    assert main(["run", str(toml), "--out", str(out), "--cache-dir", str(root / "cache"), "--quiet",
                 "--executor", "local"]) == 0
    store = Store(out, create=False)
    results = load_results(store, "tiny")
    hashes = {(r.variant, r.seed): r.config_hash for r in store.runs("tiny")}
    store.close()
    verdicts = {(c.metric, c.epoch, c.variant): c.verdict for c in compare_study(results)}
    claims = [c.verdict for c in check_claims(results)]
    return {"out": out, "results": results, "hashes": hashes, "verdicts": verdicts, "claims": claims}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """An `mlflow server` on a free localhost port; `uri()` waits until it answers."""

    def __init__(self, folder: Path):
        self.port = _free_port()
        # Its background job runner would start seven worker processes this test has no use for.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = open(folder / "server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def uri(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (Path(self.log.name).read_text()[-2000:])
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                return url
            except OSError:
                time.sleep(0.25)
        raise AssertionError(f"mlflow server did not answer at {url} within 120 s")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and the workers it started
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = _Server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


def export(capsys, study, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["export", "tiny", "--out", str(study["out"]), *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _runs(client, experiment: str) -> tuple[object, dict]:
    """The parent run and the nested runs by (variant, seed), checking that every nested run hangs off the parent."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = {(r.data.tags["nnstudy.variant"], int(r.data.tags["nnstudy.seed"])): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert len(children) == len(runs) - 1
    return parents[0], children


def _check_mlflow(client, experiment: str, study: dict) -> tuple[object, dict]:
    """What one export must hold, read back through MLflow's own client."""
    parent, children = _runs(client, experiment)
    assert sorted(children) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    results = study["results"]
    b1 = next(r for r in results.runs if (r.variant, r.seed) == ("b", 1))
    child = children[("b", 1)]
    history = sorted(client.get_metric_history(child.info.run_id, "test_acc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(row.epoch, pytest.approx(row.test_acc)) for row in b1.history]
    assert [m.step for m in history] == [1, 2]
    for name in ("train_loss", "train_acc", "test_loss", "lr"):
        assert len(client.get_metric_history(child.info.run_id, name)) == 2
    # Probes: "name|layer" and "name@pixels" become MLflow-safe names; step 0 is at initialisation.
    layer_key = next(k for k in b1.probes[0] if "|" in k)  # e.g. "act_std|2" -> "probe/act_std/2"
    layer = sorted(client.get_metric_history(child.info.run_id, "probe/" + layer_key.replace("|", "/")),
                   key=lambda m: m.step)
    assert [m.step for m in layer] == [e for e in sorted(b1.probes) if layer_key in b1.probes[e]]
    assert layer[0].value == pytest.approx(b1.probes[0][layer_key])
    at_key = next(k for k in b1.probes[2] if "@" in k)  # e.g. "shift_acc@2" -> "probe/shift_acc_at_2"
    assert child.data.metrics["probe/" + at_key.replace("@", "_at_")] == pytest.approx(b1.probes[2][at_key])
    assert child.data.params["train.lr"] == "0.05" and child.data.params["model.hidden"] == "[24]"
    assert child.data.params["dataset.name"] == "digits" and child.data.params["seed"] == "1"
    assert child.data.tags["nnstudy.config_hash"] == study["hashes"][("b", 1)]
    assert child.data.tags["nnstudy.id"] == f"tiny/b/seed-1/{study['hashes'][('b', 1)]}"
    # Verdicts: every comparison on the parent, a variant's own on its runs; the claim on the parent.
    verdict = study["verdicts"][("test_acc", 2, "b")]
    assert parent.data.tags["verdict.test_acc.epoch2.b"] == verdict == child.data.tags["verdict.test_acc.epoch2.b"]
    assert parent.data.tags["verdict.test_loss.epoch2.b"] == study["verdicts"][("test_loss", 2, "b")]
    assert not any(k.startswith("verdict.") for k in children[("a", 0)].data.tags)  # the baseline compares with none
    assert parent.data.tags["claim.1.text"].startswith("A wider hidden layer")
    assert [parent.data.tags["claim.1"]] == study["claims"]
    assert parent.data.tags["nnstudy.baseline"] == "a"
    # Artifacts: the report and its figures on the parent, the run folder on each run.
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "report.md", "figures"} <= top
    assert any(a.path.endswith(".png") for a in client.list_artifacts(parent.info.run_id, "figures"))
    files = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"config.json", "history.csv", "metrics.json", "checkpoint.pt"} <= files
    return parent, children


def _dump(out: Path) -> str:
    with sqlite3.connect(out / "nnstudy.db") as conn:
        return "\n".join(conn.iterdump())


@pytest.mark.slow
def test_mlflow_server_export(capsys, mlflow_server, study):
    """First in the module, its server asked for before the study: it starts while the study trains."""
    uri = mlflow_server.uri()
    rc, out, err = export(capsys, study, "--to", "mlflow", "--tracking-uri", uri, "--experiment", "nnstudy-tiny")
    assert rc == 0, err
    assert "4 runs added" in out
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    parent, children = _check_mlflow(client, "nnstudy-tiny", study)

    rc, out, _ = export(capsys, study, "--to", "mlflow", "--tracking-uri", uri, "--experiment", "nnstudy-tiny")
    assert rc == 0 and "0 runs added, 0 replaced, 4 unchanged" in out
    exp = client.get_experiment_by_name("nnstudy-tiny")
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == 5


def test_mlflow_sqlite_export_twice_adds_nothing(capsys, study, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = _dump(study["out"])
    rc, out, err = export(capsys, study, "--to", "mlflow", "--tracking-uri", uri)
    assert rc == 0, err
    assert "4 runs added, 0 replaced, 0 unchanged" in out and err == ""
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    parent, children = _check_mlflow(client, "tiny", study)
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the working folder
    assert _dump(study["out"]) == before  # the store is only read

    rc, out, _ = export(capsys, study, "--to", "mlflow", "--tracking-uri", uri)
    assert rc == 0 and "0 runs added, 0 replaced, 4 unchanged" in out
    again_parent, again = _runs(client, "tiny")
    assert again_parent.info.run_id == parent.info.run_id
    assert {k: r.info.run_id for k, r in again.items()} == {k: r.info.run_id for k, r in children.items()}
    assert len(client.get_metric_history(again[("b", 1)].info.run_id, "test_acc")) == 2

    # A run whose stored numbers differ from what was exported (as after an interrupted export) is
    # written anew, the old one deleted: still one run per (variant, seed), each epoch once.
    client.set_tag(children[("a", 1)].info.run_id, "nnstudy.state", "running:1:1")
    rc, out, _ = export(capsys, study, "--to", "mlflow", "--tracking-uri", uri)
    assert rc == 0 and "0 runs added, 1 replaced, 3 unchanged" in out
    _, third = _runs(client, "tiny")
    assert len(third) == 4 and third[("a", 1)].info.run_id != children[("a", 1)].info.run_id
    assert len(client.get_metric_history(third[("a", 1)].info.run_id, "test_acc")) == 2


def _events(folder: Path):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_export_reads_back_and_replaces(capsys, study, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    tb = tmp_path / "tb"
    rc, out, err = export(capsys, study, "--to", "tensorboard", tb)
    assert rc == 0, err
    assert out.startswith("tensorboard: tiny -> ") and "4 runs" in out
    root = tb / "tiny"
    assert sorted(str(p.relative_to(root)) for p in root.glob("*/seed-*")) == \
        ["a/seed-0", "a/seed-1", "b/seed-0", "b/seed-1"]
    b1 = next(r for r in study["results"].runs if (r.variant, r.seed) == ("b", 1))
    acc = _events(root / "b" / "seed-1")
    assert [(s.step, s.value) for s in acc.Scalars("test_acc")] == \
        [(row.epoch, pytest.approx(row.test_acc)) for row in b1.history]
    assert len(acc.Scalars("train_loss")) == 2
    layer_key = next(k for k in b1.probes[0] if "|" in k)
    assert len(acc.Scalars("probe/" + layer_key.replace("|", "/"))) == sum(layer_key in p for p in b1.probes.values())
    hparams = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["train.lr"].number_value == pytest.approx(0.05)
    assert start.hparams["variant"].string_value == "b" and start.hparams["model.hidden"].string_value == "[24]"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert "hparam/test_acc" in [m.name.tag for m in experiment.metric_infos]

    # Again: the study's folder is replaced, so every scalar is there once.
    files = sorted(p.name for p in root.rglob("*"))
    rc, _, _ = export(capsys, study, "--to", "tensorboard", tb)
    assert rc == 0 and len(sorted(p.name for p in root.rglob("*"))) == len(files)
    assert len(_events(root / "b" / "seed-1").Scalars("test_acc")) == 2
    assert [p.name for p in tb.iterdir()] == ["tiny"]  # no temporary folder left behind

    # A folder holding anything else is not the export's to replace.
    (root / "notes.txt").write_text("mine")
    rc, out, err = export(capsys, study, "--to", "tensorboard", tb)
    assert rc == 2 and out == "" and "notes.txt" in err and len(err.splitlines()) == 1
    assert (root / "notes.txt").read_text() == "mine" and (root / "b" / "seed-1").is_dir()


@pytest.mark.parametrize("args, words, hide", [
    ("nope --out {out} --to tensorboard {tmp}/tb", "no study named 'nope'", None),
    ("tiny --out {tmp}/missing --to tensorboard {tmp}/tb", "no nnstudy results in", None),
    ("tiny --out {out} --to mlfow --tracking-uri sqlite:///{tmp}/m.db", "did you mean 'mlflow'", None),
    ("tiny --out {out} --to mlflow --tracking-uri http://127.0.0.1:{port}", "cannot reach the MLflow tracking server",
     None),
    ("tiny --out {out} --to mlflow --tracking-uri sqlite:///{tmp}/no/such/m.db", "does not exist", None),
    ("tiny --out {out} --to mlflow", "needs --tracking-uri", None),
    ("tiny --out {out} --to mlflow {tmp}/tb --tracking-uri sqlite:///{tmp}/m.db", "does not take DIR", None),
    ("tiny --out {out} --to tensorboard", "needs a folder", None),
    ("tiny --out {out} --to tensorboard {tmp}/tb --tracking-uri sqlite:///{tmp}/m.db", "does not take --tracking-uri",
     None),
    ("tiny --out {out} --to tensorboard {tmp}/a-file/tb", "cannot write TensorBoard folder", None),
    ("tiny --out {out} --to tensorboard {tmp}/tb", "needs TensorBoard, which is not installed", "torch.utils.tensorboard"),
    ("tiny --out {out} --to mlflow --tracking-uri sqlite:///{tmp}/m.db", "needs MLflow, which is not installed", "mlflow"),
])
def test_bad_inputs(capsys, monkeypatch, study, tmp_path, args, words, hide):
    """One line naming the problem and its fix, exit status 2, and nothing written anywhere."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if hide:
        monkeypatch.setitem(sys.modules, hide, None)  # `import` of it now fails, as when it is not installed
    (tmp_path / "a-file").write_text("")
    before = _dump(study["out"])
    capsys.readouterr()
    rc = main(["export", *args.format(out=study["out"], tmp=tmp_path, port=_free_port()).split()])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.startswith("nnstudy: error: ") and len(captured.err.splitlines()) == 1, captured.err
    assert words in captured.err
    assert _dump(study["out"]) == before
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_import_nnstudy_stays_light():
    code = "import sys, nnstudy, nnstudy.export; print(sorted({'mlflow', 'tensorboard'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
