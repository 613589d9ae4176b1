"""One run's figures (its folder's curves.png and confusion.png) and what every figure shares: drawn in the worker
that trained the run, so this module imports matplotlib and numpy only, not the statistics (scipy, scikit-learn:
over a second of every worker's start-up).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib import rcParams
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextPath
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Affine2D

from nnstudy.files import write_bytes
from nnstudy.history import EpochRow
from nnstudy.store.results import RunResult

from . import fixed_layout

DPI = 100
# Confusion counts are written into the cells only when they stay legible.
ANNOTATE_MAX_CLASSES = 12

def plain(text, width: int | None = None) -> str:
    """Text for matplotlib, shown literally (`$` would start mathtext), cut to `width` characters."""
    text = str(text)
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("$", r"\$")


def save_png(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write `fig` to `path` atomically (temp name + rename)."""
    return write_bytes(Path(path), png_bytes(fig, dpi))


def run_figure_pngs(run: RunResult, classes: list[str], y_true: np.ndarray) -> dict[str, bytes]:
    """One run's `curves.png` and `confusion.png` as PNG bytes.

    Drawn where the run trained (in parallel across workers), written by the
    driver. A run without history (failed, pending) gets no curves; one
    without predictions gets no confusion matrix.
    """
    out = {}
    if run.history:
        out["curves.png"] = png_bytes(run_curves_figure(run))
    if run.predictions:
        last = max(run.predictions)
        cm = confusion_counts(y_true, run.predictions[last], len(classes))
        title = f"{run.variant}, seed {run.seed}, epoch {last}"
        out["confusion.png"] = png_bytes(confusion_figure(cm, classes, title))
    return out


def run_figures(variant: str, seed: int, status: str, history: list[EpochRow], predictions: dict[int, np.ndarray],
                classes: list[str], y_true: np.ndarray) -> dict[str, bytes]:
    """The folder's figures (curves, and a confusion matrix unless it diverged) as PNG bytes: drawn where the run
    trained, so that workers draw in parallel; `Run.finish` writes them."""
    run = RunResult("", variant, seed, status, {}, 0, history, predictions if status == "done" else {})
    return run_figure_pngs(run, classes, y_true)


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    # No fig.clf() after: its artists hold reference cycles either way (the garbage collector frees them), and
    # clearing rebuilt every axes's ticks, about 7 ms a figure.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def run_curves_figure(run: RunResult) -> Figure:
    """Loss and accuracy per epoch, train and test, for one run."""
    epochs = [r.epoch for r in run.history]
    # Fixed margins: its labels are known, and constrained layout was ~40% of drawing the figure (one per run).
    fig = Figure(figsize=(9, 3.6))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.88, wspace=0.22)
    ax_loss, ax_acc = fig.subplots(1, 2)
    tested = [r for r in run.history if not math.isnan(r.test_loss)]  # a long run's test set: every few epochs
    ax_loss.plot(epochs, [r.train_loss for r in run.history], "o-", label="train")
    ax_loss.plot([r.epoch for r in tested], [r.test_loss for r in tested], "s-", label="test")
    ax_acc.plot(epochs, [100 * r.train_acc for r in run.history], "o-", label="train")
    ax_acc.plot([r.epoch for r in tested], [100 * r.test_acc for r in tested], "s-", label="test")
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(plain(f"{run.variant}, seed {run.seed} ({run.status})"))
    return fig


def confusion_figure(cm: np.ndarray, classes: list[str], title: str) -> Figure:
    """Heatmap of a (possibly seed-averaged) confusion matrix with class names.

    Colour is the row fraction, so a rare class's mistakes are as visible as
    a common one's; the annotated numbers are the (mean) counts. Margins come
    from the class names' measured widths (fixed_layout), not constrained layout.
    """
    k = len(classes)
    side = min(12.0, max(4.5, 0.55 * k + 2.5))
    fig = Figure(figsize=(side + 1, side))
    names = [plain(c, 30) for c in classes]
    fontsize = 9 if k <= 20 else max(4, 9 - k // 20)
    ax, cax = _confusion_axes(fig, names, fontsize)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, cax=cax, label="fraction of the true class")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(k), names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.suptitle(plain(title))  # over the whole figure: the axes alone are too narrow for a long title
    if k <= ANNOTATE_MAX_CLASSES:
        integral = np.allclose(cm, np.round(cm))
        cells = [(i, j) for i in range(k) for j in range(k)]
        texts = [f"{cm[i, j]:.0f}" if integral else f"{cm[i, j]:.1f}" for i, j in cells]
        colours = ["white" if frac[i, j] > 0.5 else "black" for i, j in cells]
        _cell_texts(ax, [(j, i) for i, j in cells], texts, colours, fontsize=8)
    return fig


def _cell_texts(ax, centres, texts, colours, fontsize: float) -> None:
    """`texts` centred on the data points `centres`, drawn as one collection of glyph outlines.

    Looks as `ax.text` per cell does, at about a twentieth of the cost: a Text artist lays itself out and
    renders its glyphs on every draw (0.5 ms each, 100 in a 10-class matrix, one matrix per run).
    """
    fig = ax.get_figure()
    family = tuple(rcParams["font.family"])  # in the cache key: a changed font is drawn in that font
    paths = [_centred_glyphs(t, fontsize, family) for t in texts]
    ax.add_collection(PathCollection(paths, offsets=centres, offset_transform=ax.transData,
                                     transform=Affine2D().scale(fig.dpi / 72), facecolors=colours,
                                     edgecolors="none"), autolim=False)


@lru_cache(maxsize=4096)
def _centred_glyphs(text: str, fontsize: float, family: tuple[str, ...]) -> MplPath:
    """The outline of `text` in points, centred on the origin (cached: counts repeat across cells and runs)."""
    path = TextPath((0, 0), text, prop=FontProperties(family=list(family), size=fontsize))
    box = path.get_extents()
    return path.transformed(Affine2D().translate(-(box.x0 + box.x1) / 2, -(box.y0 + box.y1) / 2))


def _confusion_axes(fig: Figure, names: list[str], fontsize: float):
    """The square heatmap axes and its colour bar, placed in the space the names, labels and title leave."""
    width, height = fig.get_size_inches()
    name = fixed_layout.text_width(fig, names, fontsize)
    left = fixed_layout.PAD + fixed_layout.label_space() + fixed_layout.tick_space("y") + name
    bottom = (fixed_layout.PAD + fixed_layout.label_space() + fixed_layout.tick_space("x")
              + fixed_layout.slanted(name, fixed_layout.line_height(fontsize)))
    top = fixed_layout.PAD / 2 + fixed_layout.suptitle_space(fig)
    bar_labels = fixed_layout.text_width(fig, ["0.0", "1.0"], rcParams["ytick.labelsize"])
    right = fixed_layout.PAD + fixed_layout.label_space() + fixed_layout.tick_space("y") + bar_labels
    # As fig.colorbar(shrink=0.8) beside an axes of side s: a gap of 0.05 s, a bar 0.04 s wide, 0.8 s high.
    s = max(0.5, min((width - left - right) / 1.09, height - top - bottom))
    x0 = left  # what the height leaves over goes to the right, as constrained layout left it
    y0 = bottom + (height - top - bottom - s) / 2
    ax = fig.add_axes((x0 / width, y0 / height, s / width, s / height))
    cax = fig.add_axes(((x0 + 1.05 * s) / width, (y0 + 0.1 * s) / height, 0.04 * s / width, 0.8 * s / height))
    return ax, cax


def confusion_counts(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion matrix of counts (rows: true class, columns: predicted class) over every class: the matrix
    `stats.per_class.confusion` gives, counted here without importing scikit-learn."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
