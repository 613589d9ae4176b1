"""Figures laid out by measured text (report/fixed_layout.py) keep every text inside and no two panels overlapping."""

import numpy as np
import pytest

from nnstudy.history import EpochRow
from nnstudy.store.results import RunResult, StudyResults


def _clipped_or_overlapping(fig) -> list[str]:
    """Panels whose drawn texts (tick labels, axis labels, titles, legends) reach past the figure's edge, figure
    texts that do, and panels whose texts run into each other: what a wrong fixed margin would show."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    edge = fig.bbox.padded(1)

    def inside(box) -> bool:
        return edge.x0 <= box.x0 and box.x1 <= edge.x1 and edge.y0 <= box.y0 and box.y1 <= edge.y1

    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    bad = [f"axes {i}" for i, box in enumerate(boxes) if not inside(box)]
    bad += [f"figure text {t.get_text()!r}" for t in fig.texts if not inside(t.get_window_extent(renderer))]
    bad += [f"figure legend {i}" for i, leg in enumerate(fig.legends) if not inside(leg.get_window_extent(renderer))]
    bad += [f"axes {i} and {j}" for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    return bad


@pytest.mark.parametrize("classes", [[str(i) for i in range(10)],
                                     "airplane automobile bird cat deer dog frog horse ship truck".split(),
                                     ["a class name far longer than thirty characters", "b", "medium name"],
                                     [f"class-{i}" for i in range(40)], ["no", "yes"]])
def test_a_confusion_matrix_keeps_every_name_and_label_inside_the_figure(classes):
    from nnstudy.report.run_figures import confusion_figure

    k = len(classes)
    cm = np.arange(k * k).reshape(k, k) + 50 * np.eye(k, dtype=int)
    fig = confusion_figure(cm, classes, "a variant, seed 0, epoch 3")
    assert _clipped_or_overlapping(fig) == []
    # The check sees a margin too small: the same figure with names longer than those it was laid out for.
    longer = [f"{c} and more words than there was room for" for c in classes]
    fig.axes[0].set_yticks(range(k), longer)
    assert _clipped_or_overlapping(fig)


def _run(variant, seed, scale, probes=None):
    rows = [EpochRow(e, scale / e, 0.5 + 0.1 * e, 2 * scale / e, 0.4 + 0.1 * e + 0.01 * seed, 0.1, 1.0)
            for e in range(1, 5)]
    return RunResult(f"{variant}-{seed}", variant, seed, "done", {}, 0, rows, {}, probes=probes or {})


@pytest.mark.parametrize("scale", [1.0, 123456.0, 1e-7])  # plain ticks, wide ticks, ticks with an offset
def test_the_study_curves_and_the_difference_keep_their_texts_inside(scale):
    from nnstudy.report.figures import difference_figure, study_curves_figure

    runs = {v: [_run(v, s, scale * (i + 1)) for s in (0, 1, 2)] for i, v in enumerate(
        ["baseline", "a variant with a long name", "c"])}
    fig = study_curves_figure(runs)
    assert _clipped_or_overlapping(fig) == []
    for ax in fig.axes:  # the check sees a margin too small: tick labels larger than those laid out for
        ax.tick_params(labelsize=30)
    assert _clipped_or_overlapping(fig)
    others = {v: r for v, r in runs.items() if v != "baseline"}
    assert _clipped_or_overlapping(difference_figure(runs["baseline"], others, "baseline")) == []


@pytest.mark.parametrize("names", [[f"variant {i} with a name as long as a whole sentence" for i in range(5)],
                                   ["baseline", "one name " * 20]])
def test_a_legend_of_long_variant_names_stays_inside_the_figure(names):
    """Fewer columns where the names are long, and a name wider than the figure wrapped onto lines."""
    from nnstudy.report.figures import difference_figure, study_curves_figure

    runs = {v: [_run(v, s, 1.0 + i) for s in (0, 1)] for i, v in enumerate(names)}
    fig = study_curves_figure(runs)
    assert _clipped_or_overlapping(fig) == []
    others = {v: r for v, r in runs.items() if v != names[0]}
    assert _clipped_or_overlapping(difference_figure(runs[names[0]], others, names[0])) == []
    # The check sees a legend too wide: the same figure's legend set again in one row.
    legend = fig.legends[0]
    fig.legend(legend.legend_handles, [t.get_text().replace("\n", " ") for t in legend.get_texts()],
               loc="lower center", ncols=len(names))
    legend.remove()
    assert _clipped_or_overlapping(fig)


def test_probe_figures_on_a_log_axis_keep_their_texts_inside(tmp_path):
    from nnstudy.report.probe_figures import depth_figure, epochs_figure

    def probes(seed):  # per-layer values over six decades: the axis goes logarithmic
        return {e: {f"grad_norm|layer{i}": 10.0 ** (-i - seed) for i in range(6)} for e in (0, 1, 2)}

    runs = [_run(v, s, 1.0, probes(s)) for v in ("a", "b") for s in (0, 1)]
    results = StudyResults("s", "", ["a", "b"], "a", [0, 1], [4], ["x", "y"], np.array([0, 1]), {}, runs, tmp_path)
    fig = depth_figure(results, "grad_norm", "weight-gradient norm")
    assert fig.axes[0].get_yscale() == "log"
    assert _clipped_or_overlapping(fig) == []
    assert _clipped_or_overlapping(epochs_figure(results, "grad_norm", "weight-gradient norm")) == []


def test_each_cell_of_a_confusion_matrix_shows_its_count_in_a_colour_that_reads_on_it():
    """Counts drawn as glyph outlines: every cell holds ink of its text colour (white on a dark cell, black on a
    light one) around its centre, and a cell of a matrix drawn without counts holds none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from nnstudy.report import run_figures

    cm = np.array([[90, 10, 0], [5, 80, 15], [0, 30, 70]])

    def ink(fig, i, j, rgb):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
        ax = fig.axes[0]
        (x0, y0), (x1, y1) = ax.transData.transform([(j - 0.3, i - 0.3), (j + 0.3, i + 0.3)])
        h = pixels.shape[0]
        cell = pixels[int(h - max(y0, y1)):int(h - min(y0, y1)), int(min(x0, x1)):int(max(x0, x1))]
        return int((np.abs(cell - np.array(rgb)).sum(axis=2) < 250).sum())  # glyph pixels, anti-aliased

    fig = run_figures.confusion_figure(cm, ["a", "b", "c"], "t")
    for i in range(3):
        for j in range(3):
            dark = cm[i, j] / cm[i].sum() > 0.5
            assert ink(fig, i, j, (255, 255, 255) if dark else (0, 0, 0)) > 10, (i, j)
    bare = run_figures.ANNOTATE_MAX_CLASSES
    try:
        run_figures.ANNOTATE_MAX_CLASSES = 0
        fig = run_figures.confusion_figure(cm, ["a", "b", "c"], "t")
        assert ink(fig, 0, 0, (255, 255, 255)) == 0 and ink(fig, 0, 2, (0, 0, 0)) == 0
    finally:
        run_figures.ANNOTATE_MAX_CLASSES = bare
