"""One whole study on tiny data: every output file, metrics equal scikit-learn's, report sections."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix

from nnstudy.cli import main

# One worker for the module: its tests share one module-scoped study, built once rather than on each worker.
pytestmark = pytest.mark.xdist_group("end_to_end")

STUDY = """
name = "e2e"
seeds = [0, 1]
report_epochs = [1]
[dataset]
name = "digits"
subset = 400
test_subset = 150
[model]
kind = "cnn"
channels = [8]
kernel = 3
padding = 1
hidden = [32]
[train]
lr = 0.05
batch_size = 32
epochs = 3
[variants.cnn]
[variants.cnn-again]
[variants.mlp]
model.kind = "mlp"
model.hidden = [32]
"""


@pytest.fixture(scope="module")
def study_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "e2e.toml").write_text(STUDY)
    out = tmp / "out"
    code = main(["run", str(tmp / "e2e.toml"), "--out", str(out), "--cache-dir", str(tmp / "cache"), "--quiet",
                 "--executor", "local"])
    assert code == 0
    return out / "e2e"


def test_every_run_folder_holds_its_files(study_out):
    for variant in ("cnn", "cnn-again", "mlp"):
        for seed in (0, 1):
            run = study_out / "runs" / variant / f"seed-{seed}"
            for name in ("config.json", "history.csv", "metrics.json", "predictions.npy", "checkpoint.pt",
                         "curves.png", "confusion.png"):
                assert (run / name).is_file(), (variant, seed, name)
            config = json.loads((run / "config.json").read_text())
            assert config["seed"] == seed and config["variant"] == variant
            assert config["train"]["epochs"] == 3 and "dataset" in config and "model" in config
            rows = list(csv.DictReader((run / "history.csv").open()))
            assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_metrics_equal_scikit_learn_on_the_stored_predictions(study_out):
    y = np.load(study_out / "test_labels.npy")
    for run in (study_out / "runs").glob("*/seed-*"):
        pred = np.load(run / "predictions.npy")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test_acc"] == pytest.approx(float((pred == y).mean()))
        labels = list(range(10))
        ref = classification_report(y, pred, labels=labels, target_names=[str(i) for i in labels], output_dict=True,
                                    zero_division=0)
        ours = metrics["classification_report"]
        assert set(ours) == set(ref)
        for key, row in ref.items():
            if isinstance(row, dict):
                for field, value in row.items():
                    assert ours[key][field] == pytest.approx(value), (key, field)
            else:
                assert ours[key] == pytest.approx(row)
        assert metrics["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()


def test_report_has_every_section_and_an_identical_variant_shows_no_difference(study_out):
    html = (study_out / "report.html").read_text()
    for heading in ("Variants", "Training curves", "Comparisons at epoch 1", "Comparisons at epoch 3",
                    "Sample training images", "Per-class results", "Diagnostics"):
        assert heading in html, heading
    assert "data:image/png;base64," in html and 'src="figures/' not in html
    assert "is taken for" in html  # most-confused pairs in words
    md = (study_out / "report.md").read_text()
    # A/A: a variant identical to the baseline trains to identical numbers (same seeds, same device).
    assert "cnn-again vs cnn on test accuracy at epoch 3: no detectable difference" in md
    a = np.load(study_out / "runs" / "cnn" / "seed-1" / "predictions.npy")
    b = np.load(study_out / "runs" / "cnn-again" / "seed-1" / "predictions.npy")
    assert np.array_equal(a, b)


def test_report_rebuilds_from_the_store(study_out, capsys):
    before = (study_out / "report.md").read_text()
    (study_out / "report.html").unlink()
    assert main(["report", "e2e", "--out", str(study_out.parent)]) == 0
    assert (study_out / "report.html").is_file()
    strip = lambda text: "\n".join(line for line in text.splitlines() if "generated" not in line)
    assert strip((study_out / "report.md").read_text()) == strip(before)
