"""Tests of nnstudy.report: the HTML/Markdown report, its figures and the sample grid."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import markupsafe
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import classification_report, confusion_matrix

from nnstudy.report import build_report, run_figure_pngs, sample_grid
from nnstudy.report import context as ctx
from nnstudy.report.context import fmt_mean_ci, fmt_score
from nnstudy.stats import VERDICT_RULE, compare_study
from nnstudy.stats.summary import summarize
from nnstudy.store.results import EpochRow, RunResult, StudyResults

# One worker for the module: its tests share one module-scoped report, built once rather than on each worker.
pytestmark = pytest.mark.xdist_group("report")

EVIL_CLASS = "<script>alert(1)</script>"
CLASSES = ["cat", "dog", EVIL_CLASS, "ship"]
VARIANTS = ["base", "a&b", "wide"]
SECTIONS = ["Findings", "Study", "Variants", "Training curves", "Comparisons at epoch 1", "Comparisons at epoch 3",
            "Sample training images", "Per-class results", "Diagnostics"]
SECTION_IDS = ["findings", "study", "variants", "curves", "epoch-1", "epoch-3", "samples", "classes", "diagnostics"]
# The true effect of each variant on accuracy (and, negated, on loss): wide is 6 pp better, a&b no different.
EFFECTS = {"base": 0.0, "a&b": 0.0, "wide": 0.06}
RUN_SETTINGS = {"device": "cpu", "precision": "fp32", "compile": False, "vectorized": True, "threads": 2,
                "host": "box-17"}


def make_study(tmp_path, seeds=(0, 1, 2, 3), variants=VARIANTS, statuses=None, n_test=200, diverged_at=None,
               settings=None) -> StudyResults:
    """A hand-made study whose verdicts are known: each seed moves every variant alike (it cancels in the
    pairs), each run adds 0.2 pp of noise, and the variant adds EFFECTS. A diverged run's history ends at
    `diverged_at[(variant, seed)]` (default 3) with a nan loss, and its predictions there are all class 0.
    `settings` maps (variant, seed) to that run's recorded settings (default RUN_SETTINGS)."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, len(CLASSES), n_test)
    seed_effect = {seed: 0.02 * rng.standard_normal() for seed in seeds}
    runs = []
    for vi, variant in enumerate(variants):
        for seed in seeds:
            status = (statuses or {}).get((variant, seed), "done")
            run = RunResult(run_id=f"{vi}-{seed}", variant=variant, seed=seed, status=status,
                            config={}, n_params=1000 * (vi + 1))
            if status != "pending":
                run.settings = dict((settings or {}).get((variant, seed), RUN_SETTINGS))
            if status == "failed":
                run.error = "RuntimeError: CUDA out of memory <b>bold</b> in 'conv1' (p < 0.05 & \"x\")"
            elif status != "pending":
                last = (diverged_at or {}).get((variant, seed), 3) if status == "diverged" else 3
                for epoch in range(1, last + 1):
                    shift = EFFECTS.get(variant, 0.0) + seed_effect[seed] + 0.002 * rng.standard_normal()
                    acc, loss = 0.4 + 0.1 * epoch + shift, 1.6 - 0.3 * epoch - shift
                    if status == "diverged" and epoch == last:
                        loss = float("nan")
                    run.history.append(EpochRow(epoch, loss - 0.1, acc + 0.05, loss, acc, 0.1, 1.0))
                    if epoch in (1, 3):
                        right = rng.random(n_test) < acc
                        run.predictions[epoch] = np.where(right, y_true, rng.integers(0, len(CLASSES), n_test))
                if status == "diverged":
                    run.predictions[last] = np.zeros(n_test, dtype=np.int64)
            runs.append(run)
    return StudyResults(
        name="demo study", description="Does <i>width</i> help?", variants=list(variants), baseline=variants[0],
        seeds=list(seeds), report_epochs=[1, 3], classes=CLASSES, y_true=y_true,
        dataset={"name": "toy", "n_train": 800, "n_test": n_test, "image_shape": [3, 8, 8],
                 "fingerprint": "0123456789abcdef0123"},
        # the latest command line's settings: the report must show the runs' own instead
        runs=runs, out_dir=tmp_path, settings={"device": "tpu", "precision": "fp64", "vectorized": False},
    )


class Page(HTMLParser):
    """The report's structure: headings (tag, id, text, inside <nav>), and tables with their rows of cell
    texts, each under the id of the <h2> section it is in."""

    def __init__(self, text: str):
        super().__init__()
        self.headings, self.tables, self.items = [], [], []
        self._section, self._nav, self._text, self._heading, self._row, self._in_li = None, 0, None, None, None, 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "nav":
            self._nav += 1
        elif tag in ("h2", "h3", "h4"):
            self._heading, self._text = (tag, attrs.get("id")), []
            if tag == "h2" and not self._nav:
                self._section = attrs.get("id")
        elif tag == "table":
            self.tables.append({"section": self._section, "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._text = []
        elif tag == "li" and not self._nav:
            self._in_li += 1
            self._li_text = []

    def handle_endtag(self, tag):
        if tag == "nav":
            self._nav -= 1
        elif tag in ("h2", "h3", "h4") and self._heading:
            self.headings.append((tag, self._heading[1], "".join(self._text).strip(), bool(self._nav)))
            self._heading, self._text = None, None
        elif tag in ("td", "th") and self._row is not None and self._text is not None:
            self._row.append("".join(self._text).strip())
            self._text = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)
            self._row = None
        elif tag == "li" and self._in_li:
            self._in_li -= 1
            self.items.append((self._section, "".join(self._li_text).strip()))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._in_li:
            self._li_text.append(data)

    def section_headings(self, tag="h2"):
        return [(id_, text) for t, id_, text, nav in self.headings if t == tag and not nav]

    def comparisons(self, section):
        """{(variant, metric): {column: cell}} of the comparison table in a section."""
        out = {}
        for table in self.tables:
            if table["section"] == section and table["rows"] and table["rows"][0][-1] == "verdict":
                head = table["rows"][0]
                out.update({(row[0], row[1]): dict(zip(head, row)) for row in table["rows"][1:]})
        return out


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
    assert "figures/curves.png" in links and "figures/samples.png" in links and "figures/difference.png" in links
    assert len(links) == 3 + len(VARIANTS)
    for link in links:
        assert (study.out_dir / link).is_file()


def test_sections_present(built):
    _, _, html, md = built
    page = Page(html)
    # the sections themselves, in order, not the table of contents' links to them
    assert page.section_headings() == list(zip(SECTION_IDS, SECTIONS))
    variants = [(id_, text) for id_, text in page.section_headings("h3") if id_ and id_.startswith("variant-")]
    assert variants == [("variant-0", "base"), ("variant-1", "a&b"), ("variant-2", "wide")]
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["Findings", "Contents"] + SECTIONS[1:]  # the answer first, then the contents
    assert [line[4:] for line in md.split("## Per-class results\n")[1].splitlines() if line.startswith("### ")][:3] \
        == VARIANTS


def test_final_accuracy_is_mean_of_runs(built):
    study, _, html, md = built
    overview = [t for t in Page(html).tables if t["section"] == "variants"][0]["rows"][1:]
    # n: runs counted; the failed run of wide and the diverged run of a&b are not
    assert [(row[0].split(" ")[0], row[2]) for row in overview] == [("base", "4"), ("a&b", "3"), ("wide", "3")]
    for variant in study.variants:
        values = [r.final.test_acc for r in study.runs_of(variant) if r.status == "done"]
        assert abs(summarize(values).mean - np.mean(values)) < 1e-12
        shown = fmt_mean_ci(summarize(values), percent=True)
        assert shown.startswith(f"{100 * np.mean(values):.2f}%")
        assert shown in html and shown in md


def test_comparisons_and_verdicts(built):
    study, _, html, md = built
    page = Page(html)
    for epoch in (1, 3):
        table = page.comparisons(f"epoch-{epoch}")
        # wide is 6 pp better (and its loss 0.06 lower) on every seed; a&b has no effect
        assert {key: row["verdict"] for key, row in table.items()} == {
            ("a&b", "test accuracy"): "no detectable difference", ("wide", "test accuracy"): "better",
            ("a&b", "test loss"): "no detectable difference", ("wide", "test loss"): "better"}
        assert table["wide", "test accuracy"]["n"] == "3" and table["a&b", "test accuracy"]["n"] == "3"
        assert re.fullmatch(r"\+[5-7]\.\d\d pp", table["wide", "test accuracy"]["difference"])
        assert re.fullmatch(r"\+\d+\.\d\d% relative", table["wide", "test accuracy"]["relative change"])
        assert re.fullmatch(r"-0\.0[5-7]\d\d", table["wide", "test loss"]["difference"])
    assert re.search(r"wide vs base: test accuracy \+[5-7]\.\d\d pp \(\+\d+\.\d\d% relative\), "
                     r"test loss -0\.0[5-7]\d\d \(-\d+\.\d\d% relative\)", md)
    assert 'class="verdict better"' in html and "Holm p" in html


def test_few_seeds_rule_is_stated_and_kept(built):
    study, _, html, md = built
    page = Page(html)
    rule = str(markupsafe.escape(VERDICT_RULE))
    assert html.count(rule) == 2 and md.count(VERDICT_RULE) == 2  # once per comparisons section
    for epoch in (1, 3):
        section = html.split(f'<h2 id="epoch-{epoch}">')[1].split("<h2")[0]
        assert rule in section
    # n=3 < 5 for both variants: wide's "better" stands without a warning, a&b's "no difference" is warned
    warnings = [text for section, text in page.items if section == "epoch-3" and ": only n=" in text]
    assert len(warnings) == 2
    for text, label in zip(warnings, ("test accuracy", "test loss")):
        assert re.fullmatch(rf"a&b, {label}: only n=3 seeds: they can only detect differences of [\d.]+( pp)? or "
                            rf"more; run at least 5 seeds \(with this spread, 5 detect about [\d.]+( pp)?, 10 about "
                            rf"[\d.]+( pp)?\)", text), text
    for c in compare_study(study):
        assert c.warning is None or c.verdict == "no detectable difference"
    for text in (html, md):
        assert "no conclusion" not in text


def test_confused_pairs_and_diagnostics(built):
    _, _, html, md = built
    page = Page(html)
    assert re.search(r"is taken for \S+ in [\d.]+ of \d+ cases", html)
    assert "is taken for" in md
    diagnostics = [text for id_, text in page.section_headings("h3") if id_ is None][-2:]
    assert diagnostics == ["Failed runs", "Diverged runs"] and "CUDA out of memory" in html
    assert ("diagnostics", "a&b, seed 2: diverged at epoch 3 (1-2)") in page.items
    assert "- **a&b**, seed 2: diverged at epoch 3 (1-2)" in md


def test_diverged_seeds_stay_out_of_confusion_matrices(built):
    study, _, html, _ = built
    epoch = 3
    base = ctx.predictions_by_seed(study, "base", epoch)
    section = ctx.class_section(study, "a&b", epoch, base)
    kept = {r.seed: r.predictions[epoch] for r in study.runs_of("a&b") if r.status == "done"}
    assert section["n"] == 3 and sorted(kept) == [0, 1, 3]
    expected = np.mean([confusion_matrix(study.y_true, p, labels=range(len(CLASSES))) for p in kept.values()], axis=0)
    assert np.allclose(section["cm"], expected)
    assert "Epoch 3, 3 seed(s)" in html.split('id="variant-1"')[1].split("<h3")[0]


def test_a_mostly_diverged_variant_is_reported_as_diverged(tmp_path):
    diverged = {("a&b", 0): 1, ("a&b", 1): 2, ("a&b", 2): 3}
    study = make_study(tmp_path, statuses={key: "diverged" for key in diverged}, diverged_at=diverged)
    html = build_report(study)["html"].read_text()
    md = (tmp_path / "report.md").read_text()
    page = Page(html)
    for epoch in (1, 3):
        table = page.comparisons(f"epoch-{epoch}")
        assert table["a&b", "test accuracy"]["verdict"] == "diverged"
        assert table["a&b", "test loss"]["verdict"] == "diverged"
        assert table["wide", "test accuracy"]["verdict"] == "better"
    assert 'class="verdict diverged"' in html and ".verdict.diverged {" in html
    sentence = ("a&b vs base on test accuracy at epoch 3: not compared, "
                "because a&b diverged in 3 of 4 seeds (at epochs 1, 2, 3).")
    assert markupsafe.escape(sentence) in html and sentence in md
    assert "Not compared, because a&amp;b diverged in 3 of 4 seeds" in html.split('id="variant-1"')[1].split("<h3")[0]
    # shown, never averaged: one run counts in the table, three are listed with their epoch
    overview = [t for t in page.tables if t["section"] == "variants"][0]["rows"][1:]
    assert overview[1][0] == "a&b 3 diverged" and overview[1][2] == "1"
    listed = [text for section, text in page.items if section == "diagnostics"]
    assert listed == [f"a&b, seed {s}: diverged at epoch {e} (1-{s})" for (_, s), e in diverged.items()]
    assert not any("a&b" in w for w in (text for section, text in page.items if ": only n=" in text))


def test_minority_diverged_seeds_are_named_in_the_sentence(built):
    _, _, html, md = built
    assert html.count("Left out because they diverged: seed 2 (a&amp;b at epoch 3).") == 4  # 2 epochs x 2 metrics
    assert md.count("Left out because they diverged: seed 2 (a&b at epoch 3).") == 4


def test_settings_come_from_the_runs(built, tmp_path):
    _, _, html, md = built
    page = Page(html)
    same = [row for t in page.tables if t["section"] == "study" for row in t["rows"]]
    assert ["device", "cpu (all 12 runs)"] in same and ["seeds stacked", "yes (all 12 runs)"] in same
    assert ["torch.compile", "no (all 12 runs)"] in same and ["threads", "2 (all 12 runs)"] in same
    assert "- **device**: cpu (all 12 runs)" in md
    text = re.sub(r'src="data:[^"]*"', "", html)
    assert "tpu" not in text and "fp64" not in text and "box-17" not in text  # not the command line, no host

    cuda = {**RUN_SETTINGS, "device": "cuda", "precision": "bf16", "compile": True}
    unstacked = {**RUN_SETTINGS, "vectorized": False, "not_stacked": "a custom model"}
    settings = {("wide", 0): cuda, ("wide", 1): cuda, ("a&b", 0): unstacked, ("a&b", 1): unstacked,
                ("a&b", 2): unstacked, ("a&b", 3): {}}  # a run from before runs recorded settings
    study = make_study(tmp_path, settings=settings)
    html = build_report(study)["html"].read_text()
    md = (tmp_path / "report.md").read_text()
    tables = [t["rows"] for t in Page(html).tables if t["section"] == "study"][2:]  # after study and dataset
    assert tables[0] == [["threads", "2 (all 11 runs that recorded it)"]]
    assert tables[1] == [
        ["variant", "seeds", "device", "precision", "torch.compile", "seeds stacked", "not stacked because"],
        ["base", "0, 1, 2, 3", "cpu", "fp32", "no", "yes", "—"],
        ["a&b", "0, 1, 2", "cpu", "fp32", "no", "no", "a custom model"],
        ["wide", "0, 1", "cuda", "bf16", "yes", "yes", "—"],
        ["wide", "2, 3", "cpu", "fp32", "no", "yes", "—"],
    ]
    assert "1 run(s) recorded no settings (trained before runs recorded them): a&amp;b seed 3." in html
    assert "| wide | 0, 1 | cuda | bf16 | yes | yes | — |" in md


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
    assert len(pngs) == 3 + len(VARIANTS)  # curves, difference, samples, a confusion matrix per variant
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


def test_run_figures(tmp_path):
    study = make_study(tmp_path)
    done = study.runs_of("base")[0]
    pngs = run_figure_pngs(done, CLASSES, study.y_true)
    assert list(pngs) == ["curves.png", "confusion.png"]
    for png in pngs.values():
        with Image.open(io.BytesIO(png)) as img:
            img.verify()
    failed = RunResult(run_id="x", variant="base", seed=0, status="failed", config={}, error="boom")
    assert run_figure_pngs(failed, CLASSES, study.y_true) == {}


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
    items = [text for _, text in Page(html).items]
    assert "wide, test accuracy: only 0 paired seed(s): no comparison is possible; run at least 5 seeds" in items
    assert any(text.startswith("a&b, test accuracy: only n=2 seeds: they can only detect differences of ")
               for text in items)
