"""The answer first: findings rows and their short table, the report's opening block, the figure of
the verdict, the output folder's index, the API's text summaries and progress bars without a terminal."""

from __future__ import annotations

import json
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from nnstudy.cli import main
from nnstudy.report import build_report
from nnstudy.report.figures import DASHES, MARKERS, PALETTE, difference_figure, line_style, paired_band, \
    study_curves_figure
from nnstudy.report.findings import claim_tone, findings, format_findings
from nnstudy.stats import compare_study, format_ci, format_diff
from nnstudy.stats.summary import summarize
from studies import tiny_study
from test_report import VARIANTS, Page, make_study

# One worker for the module: its index tests read the studies its first test runs (module-scoped `folder`).
pytestmark = pytest.mark.xdist_group("findings")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The hand-made study of test_report: wide is 6 pp better on every seed, a&b no different."""
    return make_study(tmp_path_factory.mktemp("findings"), statuses={("wide", 3): "failed", ("a&b", 2): "diverged"})


def test_rows_are_the_final_epoch_comparisons_in_variant_order(study):
    rows = findings(study)
    final = [c for c in compare_study(study) if c.epoch == 3]
    assert [(r["variant"], r["metric"]) for r in rows] == [("a&b", "test_acc"), ("a&b", "test_loss"),
                                                           ("wide", "test_acc"), ("wide", "test_loss")]
    for row in rows:
        c = next(c for c in final if (c.variant, c.metric) == (row["variant"], row["metric"]))
        assert row["difference"] == format_diff(c.diff_mean, c.metric)
        # the interval the verdict was decided on: Holm-adjusted, so it excludes 0 exactly for better/worse
        assert row["interval"] == format_ci(c.adj_low, c.adj_high, c.metric) and row["test"] == c.test
        assert (c.adj_low > 0 or c.adj_high < 0) == (c.verdict in ("better", "worse"))
        assert c.adj_high - c.adj_low >= c.ci_high - c.ci_low
        assert row["verdict"] == c.verdict and row["detail"] == c.sentence and row["anchor"] == "epoch-3"
        assert row["tone"] == {"better": "good", "no detectable difference": "neutral"}[c.verdict]
    json.dumps(rows)  # plain rows: the CLI prints them as JSON


def test_short_table_is_aligned_and_says_when_seeds_are_too_few(study):
    rows = findings(study)
    text = format_findings(rows)
    assert str(rows) == text == repr(rows)
    lines = text.splitlines()
    assert lines[0] == "Findings (comparisons at the final epoch, 3):"
    table = lines[1:1 + 1 + len(rows)]
    assert table[0].split() == ["finding", "difference", "95%", "CI", "(Holm-adjusted)", "verdict"]
    verdict_column = {line.index(row["verdict"]) for line, row in zip(table[1:], rows)}
    assert len(verdict_column) == 1 and table[0].index("verdict") in verdict_column  # one column, aligned
    assert "wide vs base, test accuracy" in table[3] and re.search(r"\+[5-7]\.\d\d pp", table[3])
    assert lines[-1].startswith("  note: Fewer than 5 seeds")  # a&b's "no detectable difference" at n=3
    single = make_study(study.out_dir / "single", variants=["base"])
    assert format_findings(findings(single)) == "Findings: none (a single variant and no claims)."


@pytest.mark.parametrize("verdict, tone", [
    ("supported", "good"), ("holds", "fact"), ("contradicted", "bad"), ("does not hold", "fact-bad"),
    ("true by construction", "construction"),
    ("not shown at n=3 seeds", "neutral"), ("diverged", "diverged"), ("a verdict added later", "neutral")])
def test_claim_verdicts_are_opaque_and_only_clear_ones_coloured(study, verdict, tone):
    claim = SimpleNamespace(text="Wider is better " * 8, source="lab notes", verdict=verdict, evidence="n=3 seeds")
    rows = findings(study, comparisons=[], claims=[claim])
    assert claim_tone(verdict) == tone
    assert rows == [{**rows[0], "kind": "claim", "verdict": verdict, "tone": tone, "detail": "n=3 seeds",
                     "source": "lab notes", "anchor": "claims"}]
    line = format_findings(rows).splitlines()[2]
    assert line.startswith("  claim: Wider is better") and "…" in line and line.endswith(verdict)


def test_the_report_opens_with_the_findings(study):
    study.claims = [{"text": "A wider network is <b>more</b> accurate.", "source": "coursework", "metric": "test_acc",
                     "variant": "wide", "baseline": "base", "direction": "greater"}]
    try:
        paths = build_report(study)
    finally:
        study.claims = []
    html, md = paths["html"].read_text(), paths["md"].read_text()
    page = Page(html)
    ids = [id_ for id_, _ in page.section_headings()]
    assert ids[0] == "findings" and html.index('id="findings"') < html.index('id="contents"')
    compared, claimed = [t["rows"] for t in page.tables if t["section"] == "findings"]
    assert compared[0] == ["comparison", "difference", "95% CI (Holm-adjusted)", "verdict", "details"]
    assert [row[0] for row in compared[1:]] == ["a&b vs base, test accuracy", "a&b vs base, test loss",
                                                "wide vs base, test accuracy", "wide vs base, test loss"]
    assert compared[3][3] == "better" and compared[1][4] == "Comparisons at epoch 3"
    assert claimed[0] == ["claim", "evidence", "verdict", "details"]
    assert claimed[1][0] == "A wider network is <b>more</b> accurate. (coursework)" and claimed[1][3] == "Claims checked"
    block = html.split('<section class="findings">')[1].split("</section>")[0]
    for anchor in re.findall(r'href="#([^"]+)"', block):  # every link lands on a section
        assert f'id="{anchor}"' in html, anchor
    assert 'class="verdict good">better' in block and "&lt;b&gt;more" in block
    assert '<img src="data:image/png;base64,' in block  # the figure of the verdict
    findings_md = md.split("## Findings\n")[1].split("## Contents")[0]
    assert "\n\n| comparison | difference | 95% CI (Holm-adjusted) | verdict | details |\n|---|" in findings_md
    assert "| wide vs base, test accuracy |" in findings_md and "(#comparisons-at-epoch-3)" in findings_md
    assert "\n\n| claim | evidence | verdict | details |\n|---|" in findings_md
    assert "(#claims-checked)" in findings_md and "## Claims checked" in md
    assert "![Test accuracy difference from the baseline base" in findings_md


def test_difference_band_is_the_paired_difference(study):
    base, wide = study.runs_of("base"), [r for r in study.runs_of("wide") if r.status == "done"]
    epochs, mean, low, high, n = paired_band(base, wide, "test_acc")
    assert epochs == [1, 2, 3] and n == 3
    for i, epoch in enumerate(epochs):
        diffs = [w.at_epoch(epoch).test_acc - b.at_epoch(epoch).test_acc
                 for w in wide for b in base if b.seed == w.seed]
        s = summarize(diffs)
        assert (mean[i], low[i], high[i]) == pytest.approx((s.mean, s.ci_low, s.ci_high))
        assert 0.04 < low[i] < mean[i] < high[i] < 0.08 and abs(mean[i] - 0.06) < 0.01  # wide: 6 pp better
    same = [r for r in study.runs_of("a&b") if r.status == "done"]
    fig = difference_figure(base, {"a&b": same, "wide": wide}, "base", {"a&b": 1, "wide": 2})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()[:2]] == ["a&b − base (n=3)", "wide − base (n=3)"]
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.get_lines())  # zero is marked
    assert difference_figure(base, {"wide": []}, "base") is None


def test_lines_differ_in_dash_and_marker_not_only_colour(study):
    styles = [line_style(i, 8) for i in range(len(DASHES) * len(MARKERS))]
    assert len({(s["linestyle"], s["marker"]) for s in styles}) == len(styles)  # greyscale and colour-blind safe
    assert len({s["color"] for s in styles[:len(PALETTE)]}) == len(PALETTE)
    runs = {v: [r for r in study.runs_of(v) if r.status == "done"] for v in VARIANTS}
    lines = study_curves_figure(runs).axes[0].get_lines()
    assert len(lines) == 3 and len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An output folder with two tiny digits studies: 'tiny' (two variants), then 'solo' (one)."""
    tmp = tmp_path_factory.mktemp("index")
    out, cache = tmp / "out", tmp / "cache"
    (tmp / "tiny.toml").write_text(tiny_study(epochs=2))
    solo = tiny_study(epochs=1).replace('name = "tiny"', 'name = "solo"').replace("[variants.b]\nmodel.hidden = [24]\n", "")
    (tmp / "solo.toml").write_text(solo)
    return tmp, out, cache


@pytest.fixture
def studied(folder):
    """`folder` with 'tiny' run: by test_run_prints_findings_and_writes_the_index where it ran first on this worker
    (the module's xdist group keeps them together), else here, so that no test depends on another's order."""
    tmp, out, cache = folder
    if not (out / "tiny").is_dir():
        assert main(["run", str(tmp / "tiny.toml"), "--out", str(out), "--cache-dir", str(cache), "--quiet",
                     "--executor", "local"]) == 0
    return folder


def test_run_prints_findings_and_writes_the_index(folder, capsys):
    tmp, out, cache = folder
    common = ["--out", str(out), "--cache-dir", str(cache), "--quiet", "--executor", "local"]
    assert main(["run", str(tmp / "tiny.toml"), *common]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Findings (comparisons at the final epoch, 2):\n")
    assert re.search(r"b vs a, test accuracy +[+-]\d+\.\d\d pp", printed)
    assert f"report: {out / 'tiny' / 'report.html'}" in printed and f"index: {out / 'index.html'}" in printed
    index = (out / "index.html").read_text()
    assert '<a href="tiny/report.html">' in index and "4 done" in index and "b vs a, test accuracy" in index

    assert main(["run", str(tmp / "solo.toml"), *common]) == 0
    assert "Findings: none (a single variant and no claims)." in capsys.readouterr().out
    index = (out / "index.html").read_text()
    rows = [row for t in Page(index).tables for row in t["rows"][1:]]
    assert [row[0].split()[0] for row in rows] == ["solo", "tiny"]  # the latest run first
    assert "no comparisons (a single variant) and no claims" in rows[0][3]


def test_report_command_rebuilds_the_index_and_returns_findings(studied, capsys):
    tmp, out, cache = studied
    (out / "index.html").unlink()
    capsys.readouterr()
    assert main(["report", "tiny", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["index"] == str(out / "index.html") and (out / "index.html").is_file()
    assert [(f["variant"], f["metric"]) for f in printed["findings"]] == [("b", "test_acc"), ("b", "test_loss")]


def test_api_summaries_are_text(studied):
    import nnstudy

    tmp, out, _ = studied
    study = nnstudy.load_study(str(tmp / "tiny.toml"))
    assert repr(study).splitlines() == [
        f"Study 'tiny' ({tmp / 'tiny.toml'}): 2 variants x 2 seeds = 4 runs, 2 epochs, seeds 0, 1",
        "  a: baseline", "  b: model.hidden = [24]"]
    results = nnstudy.open_results("tiny", out)
    text = repr(results)
    assert text.startswith("Results of study 'tiny': 4 runs (4 done)\nFindings (comparisons at the final epoch, 2):")
    assert str(results.findings) in text and " at 0x" not in text
    assert [f["verdict"] for f in results.findings] == [c.verdict for c in compare_study(results.study)
                                                       if c.epoch == 2]


def test_progress_bars_only_for_a_watcher(monkeypatch, capsys):
    """Without a terminal or a notebook no bar is drawn; in a Jupyter kernel a bar is (tqdm.auto)."""
    from nnstudy.training import progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not progress.in_notebook() and not progress.bars_shown(True)
    bar = progress.EpochProgress("a", 1, 2, steps=100, images_per_step=32)
    for _ in range(100):
        bar.step(np.ones(2))
    bar.close()
    assert bar.bar is None and capsys.readouterr().err == ""

    kernel = SimpleNamespace(get_ipython=lambda: SimpleNamespace(config={"IPKernelApp": {}}))
    monkeypatch.setitem(sys.modules, "IPython", kernel)
    assert progress.in_notebook() and progress.bars_shown(True) and not progress.bars_shown(False)
    terminal = SimpleNamespace(get_ipython=lambda: SimpleNamespace(config={"TerminalIPythonApp": {}}))
    monkeypatch.setitem(sys.modules, "IPython", terminal)
    assert not progress.in_notebook()


def test_a_claims_reading_and_rationale_reach_its_row_and_the_markdown_report(study):
    claim = SimpleNamespace(text="Wider is better.", source="lab notes", verdict="supported", evidence="n=3 seeds",
                            reading="better as higher test accuracy", rationale="0.5 pp: the smallest gain worth it")
    row = findings(study, comparisons=[], claims=[claim])[0]
    assert (row["reading"], row["rationale"]) == (claim.reading, claim.rationale)
    bare = findings(study, comparisons=[], claims=[SimpleNamespace(text="x", source="y", verdict="supported",
                                                                    evidence="n=3 seeds")])[0]
    assert (bare["reading"], bare["rationale"]) == ("", "")
    study.claims = [{"text": "A wider network is more accurate.", "source": "coursework", "metric": "test_acc",
                     "variant": "wide", "baseline": "base", "direction": "greater",
                     "rationale": "no threshold: the direction alone"}]
    try:
        md = build_report(study)["md"].read_text()
    finally:
        study.claims = []
    assert "(why this value: no threshold: the direction alone)" in md
