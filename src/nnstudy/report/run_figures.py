"""One run's figures (its folder's curves.png and confusion.png) and what every figure shares: drawn in the worker
that trained the run, so this module imports matplotlib and numpy only, not the statistics (scipy, scikit-learn:
over a second of every worker's start-up).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nnstudy.files import write_bytes
from nnstudy.history import EpochRow
from nnstudy.store.results import RunResult

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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    fig.clf()
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
    a common one's; the annotated numbers are the (mean) counts.
    """
    k = len(classes)
    side = min(12.0, max(4.5, 0.55 * k + 2.5))
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    names = [plain(c, 30) for c in classes]
    fontsize = 9 if k <= 20 else max(4, 9 - k // 20)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(k), names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.suptitle(plain(title))  # over the whole figure: the axes alone are too narrow for a long title
    if k <= ANNOTATE_MAX_CLASSES:
        integral = np.allclose(cm, np.round(cm))
        for i in range(k):
            for j in range(k):
                text = f"{cm[i, j]:.0f}" if integral else f"{cm[i, j]:.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
    return fig


def confusion_counts(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion matrix of counts (rows: true class, columns: predicted class) over every class: the matrix
    `stats.per_class.confusion` gives, counted here without importing scikit-learn."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
