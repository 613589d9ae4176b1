"""Matplotlib figures for a whole study, saved as PNG files (one run's own figures: run_figures.py).

Figures are built with `matplotlib.figure.Figure` directly instead of pyplot:
no global figure registry to leak memory in a long study, and no display
backend is needed (the Agg canvas is the default for a bare Figure).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nnstudy.stats.summary import summarize
from nnstudy.store.results import RunResult

from .fixed_layout import PAD, figure_legend, fit, legend_height, suptitle_space, wrap
from .run_figures import DPI, confusion_figure, plain, png_bytes, run_curves_figure, run_figure_pngs, run_figures, save_png
from .samples import sample_grid

__all__ = ["DPI", "confusion_figure", "curve_band", "difference_figure", "line_style", "paired_band", "plain",
           "png_bytes", "run_curves_figure", "run_figure_pngs", "run_figures", "sample_grid", "save_png",
           "study_curves_figure"]

# Okabe & Ito's colour-blind-safe palette (yellow left out: too faint on white), with a dash
# pattern and a marker per line as well, so lines stay apart in greyscale and without colour.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DASHES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
MARKED_POINTS = 12  # at most this many markers per line, so long curves stay readable


def line_style(i: int, n_points: int) -> dict:
    """Plot keywords for the i-th line of a figure: colour, dash pattern and marker all differ."""
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": DASHES[i % len(DASHES)],
            "marker": MARKERS[i % len(MARKERS)], "markersize": 5,
            "markevery": max(1, math.ceil(n_points / MARKED_POINTS))}


# (attribute on EpochRow, axis label, scale) for the four study panels.
CURVE_PANELS = [
    ("train_loss", "train loss", 1.0),
    ("test_loss", "test loss", 1.0),
    ("train_acc", "train accuracy (%)", 100.0),
    ("test_acc", "test accuracy (%)", 100.0),
]


def study_curves_figure(runs_by_variant: dict[str, list[RunResult]]) -> Figure:
    """2x2 panels of loss/accuracy vs epoch: mean over seeds, shaded 95% t-band."""
    fig = Figure(figsize=(11, 7.5))
    grid = fig.subplots(2, 2)
    axes = grid.ravel()
    for ax, (attr, label, scale) in zip(axes, CURVE_PANELS):
        for i, (variant, runs) in enumerate(runs_by_variant.items()):
            epochs, mean, low, high = curve_band(runs, attr)
            if not epochs:
                continue
            style = line_style(i, len(epochs))
            n_runs = sum(1 for r in runs if r.history)
            ax.plot(epochs, scale * mean, label=plain(f"{variant} (n={n_runs})"), **style)
            # A t-band can reach past what the metric can be (few seeds): show only the possible part.
            top = scale if attr.endswith("_acc") else None
            ax.fill_between(epochs, np.clip(scale * low, 0, top), np.clip(scale * high, 0, top),
                            color=style["color"], alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    below = 0.0
    if handles:
        below = legend_height(fig, figure_legend(fig, handles, labels, 4))
    fig.suptitle("mean over seeds, shaded: 95% confidence interval of the mean")
    fit(fig, grid, top=suptitle_space(fig), bottom=below)
    return fig


def curve_band(runs: list[RunResult], attr: str):
    """Per-epoch mean and t-interval of `attr` over the runs that reached it."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for row in run.history:
            value = getattr(row, attr)
            if not math.isnan(value):  # not evaluated that epoch (or diverged there)
                by_epoch.setdefault(row.epoch, []).append(value)
    epochs = sorted(by_epoch)
    stats = [summarize(by_epoch[e]) for e in epochs]
    # With one seed there is no interval: the band collapses onto the line.
    mean = np.array([s.mean for s in stats])
    low = np.array([s.ci_low if math.isfinite(s.ci_low) else s.mean for s in stats])
    high = np.array([s.ci_high if math.isfinite(s.ci_high) else s.mean for s in stats])
    return epochs, mean, low, high


def difference_figure(baseline_runs: list[RunResult], runs_by_variant: dict[str, list[RunResult]],
                      baseline: str, styles: dict[str, int] | None = None) -> Figure | None:
    """The figure of the verdict: each variant's paired difference from the baseline in test
    accuracy (pp) over epochs, mean over seeds with the 95% t-band, and zero marked.

    `runs_by_variant` holds the non-baseline variants' usable runs; `styles`
    maps a variant to its line_style index (default: its position), so its
    line looks as it does in the study curves. None when nothing pairs.
    """
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    drawn = False
    for i, (variant, runs) in enumerate(runs_by_variant.items()):
        epochs, mean, low, high, n = paired_band(baseline_runs, runs, "test_acc")
        if not epochs:
            continue
        style = line_style((styles or {}).get(variant, i), len(epochs))
        ax.plot(epochs, 100 * mean, label=plain(f"{variant} − {baseline} (n={n})"), **style)
        ax.fill_between(epochs, 100 * low, 100 * high, color=style["color"], alpha=0.2, linewidth=0)
        drawn = True
    if not drawn:
        fig.clf()
        return None
    ax.axhline(0, color="black", linewidth=1, zorder=1)  # no difference: a band that covers it decides nothing
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy difference (pp)")
    ax.grid(alpha=0.3)
    legend = figure_legend(fig, *ax.get_legend_handles_labels(), 3)  # below: never over a band
    title = plain(f"Paired by seed: variant minus baseline {baseline}; mean over seeds, shaded: 95% confidence interval")
    ax.set_title(wrap(fig, title, 10, fig.get_size_inches()[0] - 2 * PAD - 1.0), fontsize=10)  # 1 in: the y labels
    fit(fig, [[ax]], bottom=legend_height(fig, legend))
    return fig


def paired_band(baseline_runs: list[RunResult], runs: list[RunResult], attr: str):
    """Per-epoch mean and t-interval of the per-seed difference run - baseline run in `attr`.

    Only seeds that both sides reached the epoch with are paired; returns
    (epochs, mean, low, high, number of seeds paired at the last epoch).
    """
    base = {r.seed: {row.epoch: getattr(row, attr) for row in r.history} for r in baseline_runs}
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        mine = base.get(run.seed, {})
        for row in run.history:
            if row.epoch in mine and not math.isnan(getattr(row, attr) - mine[row.epoch]):
                by_epoch.setdefault(row.epoch, []).append(getattr(row, attr) - mine[row.epoch])
    epochs = sorted(by_epoch)
    stats = [summarize(by_epoch[e]) for e in epochs]
    mean = np.array([s.mean for s in stats])
    low = np.array([s.ci_low if math.isfinite(s.ci_low) else s.mean for s in stats])
    high = np.array([s.ci_high if math.isfinite(s.ci_high) else s.mean for s in stats])
    return epochs, mean, low, high, (len(by_epoch[epochs[-1]]) if epochs else 0)
