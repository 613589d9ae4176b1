"""Tests of nnstudy.report: the HTML/Markdown report, its figures and the sample grid."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import classification_report

from nnstudy.report import build_report, sample_grid, write_run_figures
from nnstudy.report.context import fmt_mean_ci, fmt_score
from nnstudy.stats.summary import summarize
from nnstudy.store.results import EpochRow, RunResult, StudyResults

EVIL_CLASS = "<script>alert(1)</script>"
CLASSES = ["cat", "dog", EVIL_CLASS, "ship"]
VARIANTS = ["base", "a&b", "wide"]
SECTIONS = ["Study", "Variants", "Training curves", "Comparisons at epoch 1", "Comparisons at epoch 3",
            "Sample training images", "Per-class results", "Diagnostics"]


def make_study(tmp_path, seeds=(0, 1, 2, 3), variants=VARIANTS, statuses=None, n_test=200) -> StudyResults:
    """A hand-made study: seeded random predictions whose accuracy depends on the variant."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, len(CLASSES), n_test)
    runs = []
    for vi, variant in enumerate(variants):
        for seed in seeds:
            status = (statuses or {}).get((variant, seed), "done")
            run = RunResult(run_id=f"{vi}-{seed}", variant=variant, seed=seed, status=status,
                            config={}, n_params=1000 * (vi + 1))
            if status == "failed":
                run.error = "RuntimeError: CUDA out of memory <b>bold</b> in 'conv1' (p < 0.05 & \"x\")"
            elif status != "pending":
                for epoch in (1, 2, 3):
                    acc = 0.4 + 0.1 * epoch + 0.03 * vi + 0.02 * rng.standard_normal()
                    run.history.append(EpochRow(epoch, 1.5 - 0.3 * epoch, acc + 0.05, 1.6 - 0.3 * epoch - 0.02 * vi,
                                                acc, 0.1, 1.0))
                    if epoch in (1, 3):
                        right = rng.random(n_test) < acc
                        run.predictions[epoch] = np.where(right, y_true, rng.integers(0, len(CLASSES), n_test))
            runs.append(run)
    return StudyResults(
        name="demo study", description="Does <i>width</i> help?", variants=list(variants), baseline=variants[0],
        seeds=list(seeds), report_epochs=[1, 3], classes=CLASSES, y_true=y_true,
        dataset={"name": "toy", "n_train": 800, "n_test": n_test, "image_shape": [3, 8, 8],
                 "fingerprint": "0123456789abcdef0123"},
        runs=runs, out_dir=tmp_path, settings={"device": "cpu", "precision": "fp32", "vectorized": False},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full report, shared by the tests that only read it (building takes a few seconds)."""
    tmp = tmp_path_factory.mktemp("study")
    study = make_study(tmp, statuses={("wide", 3): "failed", ("a&b", 2): "diverged"})
    images = np.random.default_rng(1).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    sample_grid(images, np.arange(40) % len(CLASSES), CLASSES, tmp / "figures" / "samples.png")
    paths = build_report(study)
    return study, paths, paths["html"].read_text(), paths["md"].read_text()


def test_files_exist(built):
    study, paths, html, md = built
    assert paths["html"] == study.out_dir / "report.html" and paths["html"].is_file()
    assert paths["md"] == study.out_dir / "report.md" and paths["md"].is_file()
    assert not list(study.out_dir.rglob("*.tmp"))  # atomic writes left nothing behind


def test_html_escapes_user_strings(built):
    _, _, html, md = built
    for text in (html, md):
        assert "<script>alert" not in text
        assert "<b>bold" not in text  # the failed run's error
        assert "<i>width" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold" in html and "a&amp;b" in html
    assert "<script" not in html  # no JavaScript at all


def test_markdown_keeps_tags_inert_but_reads_as_typed(built):
    _, _, _, md = built
    # a tag cannot start: its "<" stays escaped; everything else is plain text
    assert "&lt;script>alert(1)&lt;/script>" in md and "&lt;b>bold" in md and "&lt;i>width&lt;/i>" in md
    assert "a&b" in md and "a&amp;b" not in md
    assert "in 'conv1' (p < 0.05 & \"x\")" in md
    assert "&#39;" not in md and "&#34;" not in md and "&gt;" not in md


def test_html_is_self_contained(built):
    _, _, html, _ = built
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) >= 5  # curves, samples, one confusion matrix per variant
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http" not in html and 'src="figures/' not in html and "<link" not in html
    for src in sources:  # every embedded image decodes
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_markdown_links_figures(built):
    study, _, _, md = built
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert "figures/curves.png" in links and "figures/samples.png" in links
    assert len(links) == 2 + len(VARIANTS)
    for link in links:
        assert (study.out_dir / link).is_file()


def test_sections_present(built):
    _, _, html, md = built
    for heading in SECTIONS:
        assert re.search(rf"<h2[^>]*>{heading}</h2>", html), heading
        assert f"## {heading}\n" in md, heading
    for variant in ("base", "a&amp;b", "wide"):
        assert re.search(rf"<h3[^>]*>{variant}</h3>", html)


def test_final_accuracy_is_mean_of_runs(built):
    study, _, html, md = built
    for variant in study.variants:
        values = [r.final.test_acc for r in study.runs_of(variant) if r.status != "failed"]
        assert abs(summarize(values).mean - np.mean(values)) < 1e-12
        shown = fmt_mean_ci(summarize(values), percent=True)
        assert shown.startswith(f"{100 * np.mean(values):.2f}%")
        assert shown in html and shown in md


def test_comparisons_and_verdicts(built):
    _, _, html, md = built
    assert re.search(r"a&amp;b has [\d.]+% (higher|lower) accuracy and [\d.]+% (higher|lower) loss than base", html)
    assert re.search(r"wide has [\d.]+% (higher|lower) accuracy", md)
    assert re.search(r'class="verdict (better|worse|nodiff)"', html)
    assert "Holm p" in html and "no conclusion is possible" in html  # n=4 < 5: warned
    assert 'class="warning"' in html and "> **Warning: too few seeds" in md


def test_confused_pairs_and_diagnostics(built):
    _, _, html, md = built
    assert re.search(r"is taken for \S+ in [\d.]+ of \d+ cases", html)
    assert "is taken for" in md
    assert "Failed runs" in html and "CUDA out of memory" in html
    assert "Diverged runs" in html and "diverged" in md
    assert "None beyond noise" in html or "F1 of class" in html


def test_classification_table_matches_sklearn(tmp_path):
    study = make_study(tmp_path, seeds=(7,))
    html = build_report(study)["html"].read_text()
    run = study.runs_of("wide")[0]
    report = classification_report(study.y_true, run.predictions[3], labels=range(len(CLASSES)),
                                   target_names=CLASSES, output_dict=True, zero_division=0)
    section = html.split('id="variant-2"')[1].split("<h3")[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', section)
    expected = []
    for name in CLASSES:
        r = report[name]
        expected += [fmt_one(r["precision"]), fmt_one(r["recall"]), fmt_one(r["f1-score"]), str(int(r["support"]))]
    expected += [fmt_one(report["accuracy"]), str(len(study.y_true))]
    for name in ("macro avg", "weighted avg"):
        r = report[name]
        expected += [fmt_one(r["precision"]), fmt_one(r["recall"]), fmt_one(r["f1-score"]), str(int(r["support"]))]
    assert cells == expected


def fmt_one(value: float) -> str:
    shown = fmt_score(summarize([value]))
    assert shown == f"{value:.3f}"  # one seed: no interval
    return shown


def test_pngs_decode_with_sane_sizes(built):
    study, _, _, _ = built
    pngs = sorted((study.out_dir / "figures").glob("*.png"))
    assert len(pngs) == 2 + len(VARIANTS)
    for png in pngs:
        with Image.open(png) as img:
            assert img.format == "PNG"
            assert 300 <= img.width <= 2000 and 100 <= img.height <= 2000
        assert png.stat().st_size < 500_000


@pytest.mark.parametrize("n, channels, size", [(32, 3, (1000, 600)), (5, 1, (625, 150)), (9, 3, (1000, 300))])
def test_sample_grid_tiles(tmp_path, n, channels, size):
    import torch

    images = torch.randint(0, 256, (50, channels, 12, 12), dtype=torch.uint8)
    labels = torch.arange(50) % len(CLASSES)
    path = sample_grid(images, labels, CLASSES, tmp_path / "samples.png", n=n)
    with Image.open(path) as img:  # 8 columns of 125 px, rows of 150 px
        assert img.size == size


def test_write_run_figures(tmp_path):
    study = make_study(tmp_path)
    done = study.runs_of("base")[0]
    paths = write_run_figures(done, CLASSES, study.y_true, tmp_path / "run")
    assert [p.name for p in paths] == ["curves.png", "confusion.png"]
    for p in paths:
        with Image.open(p) as img:
            img.verify()
    failed = RunResult(run_id="x", variant="base", seed=0, status="failed", config={}, error="boom")
    assert write_run_figures(failed, CLASSES, study.y_true, tmp_path / "failed") == []


def test_report_with_only_pending_runs(tmp_path):
    study = make_study(tmp_path, statuses={(v, s): "pending" for v in VARIANTS for s in range(4)})
    paths = build_report(study)
    html = paths["html"].read_text()
    assert "Unfinished runs" in html and "12 pending" in html
    assert "No finished run with predictions yet" in html


def test_report_mid_study(tmp_path):
    """Some runs finished, others running or not started yet; one variant has nothing."""
    study = make_study(tmp_path, seeds=(0, 1, 2), statuses={("wide", s): "pending" for s in range(3)})
    study.runs = [r for r in study.runs if not (r.variant == "a&b" and r.seed == 2)]
    study.runs[0].status = "running"
    html = build_report(study)["html"].read_text()
    assert "1 not started" in html and "1 running" in html
    assert "no conclusion is possible" in html
