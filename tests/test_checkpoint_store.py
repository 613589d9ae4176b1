"""Checkpoint folders in an object store (--checkpoint-dir s3://...) behave like local ones.

pyarrow's in-memory filesystem stands in for S3: like S3 it has no atomic
rename (a move is copy + delete there), and like S3 a written object appears
whole or not at all.
"""

import json

import pytest
import torch

from nnstudy.cli import main
from nnstudy.errors import UserError
from nnstudy.training import checkpoint as ck
from studies import tiny_study

fs = pytest.importorskip("pyarrow.fs", reason="object stores need pyarrow: pip install 'nnstudy[ray]'")


@pytest.fixture
def store(monkeypatch):
    """mock://PATH URIs open one in-memory filesystem, as s3://bucket/prefix opens a bucket."""
    memory = fs._MockFileSystem()
    monkeypatch.setattr(ck, "_filesystem", lambda uri: (memory, uri.split("://", 1)[1]))
    return memory


def _ckpt(epoch: int) -> dict:
    return {"epoch": epoch, "identity": "abc", "weights": torch.full((3,), float(epoch))}


@pytest.mark.parametrize("where", ["local", "store"])
def test_save_resume_align_and_remove_work_alike(where, tmp_path, request):
    if where == "store":
        request.getfixturevalue("store")
        root = "mock://bucket/prefix"
    else:
        root = str(tmp_path)
    a, b = ck.checkpoint_folder(root, "tiny", "a", "seed-0"), ck.checkpoint_folder(root, "tiny", "a", "seed-1")
    assert not ck.has_checkpoint(a) and ck.checkpoint_identity(a) is None
    for epoch in (1, 2):
        ck.save_checkpoint(a, _ckpt(epoch))
    ck.save_checkpoint(b, _ckpt(1))
    assert ck.has_checkpoint(a) and ck.checkpoint_identity(a) == "abc"
    assert ck.load_checkpoint(ck.resume_checkpoint(a))["weights"].tolist() == [2.0] * 3
    # A crash between two seeds' writes left seed 0 an epoch ahead: it is rolled back to the common epoch.
    assert ck.align_checkpoints([a, b]) == {a: 1, b: 1}
    assert ck.checkpoint_epoch(ck.resume_checkpoint(a)) == 1
    ck.remove_checkpoints(a)
    assert not ck.has_checkpoint(a) and ck.has_checkpoint(b)


def test_a_crash_between_the_two_moves_resumes_from_the_previous_checkpoint(store):
    folder = "mock://bucket/run"
    ck.save_checkpoint(folder, _ckpt(1))
    store.move("bucket/run/checkpoint.pt", "bucket/run/checkpoint-prev.pt")  # what the first move of epoch 2 does
    assert ck.resume_checkpoint(folder) == "mock://bucket/run/checkpoint-prev.pt"
    assert ck.checkpoint_epoch(ck.resume_checkpoint(folder)) == 1
    assert ck.align_checkpoints([folder]) == {folder: 1}
    assert store.get_file_info("bucket/run/checkpoint.pt").type == fs.FileType.File


def test_folders_join_for_paths_and_uris(tmp_path):
    assert ck.checkpoint_folder("s3://bucket/prefix/", "tiny", "a", "seed-0") == "s3://bucket/prefix/tiny/a/seed-0"
    assert ck.checkpoint_folder(f"file://{tmp_path}", "tiny") == str(tmp_path / "tiny")
    ck.save_checkpoint(f"file://{tmp_path}/run", _ckpt(1))  # file:// is a local folder: atomic rename
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_an_unknown_scheme_is_one_line():
    with pytest.raises(UserError, match="pyarrow cannot open it"):
        ck.has_checkpoint("nosuchscheme://bucket/x")


def test_a_study_with_its_checkpoints_in_an_object_store(store, tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(tiny_study(epochs=2))
    base = ["run", str(study), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--executor", "local"]

    def show(out):
        assert main(["show", "tiny", "--out", str(out), "--json"]) == 0
        return {(r["variant"], r["seed"]): r for r in json.loads(capsys.readouterr().out)["runs"]}

    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "out"), "--checkpoint-dir", "mock://bucket/ckpt"]) == 0
    capsys.readouterr()
    plain, stored = show(tmp_path / "plain"), show(tmp_path / "out")
    for key, run in stored.items():
        assert run["status"] == "done" and run["test_loss"] == plain[key]["test_loss"]
        variant, seed = key
        assert store.get_file_info(f"bucket/ckpt/tiny/{variant}/seed-{seed}/checkpoint.pt").type == fs.FileType.File
        assert not list((tmp_path / "out" / "tiny" / "runs" / variant / f"seed-{seed}").glob("checkpoint*"))

    # A new output folder with variant b changed: a's stored checkpoints are its own and are restored;
    # b's are another config's, so they are removed and b trains afresh.
    study.write_text(tiny_study(epochs=2, variant_b="model.hidden = [20]"))
    assert main([*base, "--out", str(tmp_path / "out2"), "--checkpoint-dir", "mock://bucket/ckpt"]) == 0
    err = capsys.readouterr().err
    assert "tiny: a seed 0: not in the store, but its run folder holds its checkpoint; resuming from there" in err
    assert "tiny: b seed 0: its run folder held another config's results; retraining from scratch" in err
    again = show(tmp_path / "out2")
    assert again[("a", 0)]["test_loss"] == plain[("a", 0)]["test_loss"]
    assert ck.checkpoint_identity("mock://bucket/ckpt/tiny/b/seed-0") == again[("b", 0)]["hash"]
