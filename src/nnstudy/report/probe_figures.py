"""Figures of the mechanism probes: what happens inside the networks, per variant, with the seed band.

Every line is the mean over seeds; the band spans the seeds' minimum to maximum.
A probe registered with a `figure` (registry.PROBES) is drawn by `mechanism_figures`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nnstudy.history import per_layer
from nnstudy.registry import PROBES
from nnstudy.store.results import StudyResults

from .figures import line_style, plain
from .fixed_layout import fit


def _layer_values(run, epoch: int, probe: str) -> list[float]:
    return per_layer(run.probes.get(epoch, {}), probe)


def _band(ax, x, rows: list[list[float]], label: str) -> None:
    """Mean line and min-max band of per-seed rows (rows of unequal length are cut to the shortest)."""
    width = min(len(r) for r in rows)
    data = np.array([r[:width] for r in rows], dtype=float)
    with warnings.catch_warnings():  # an epoch where every seed lacks the probe is a gap in the line
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, low, high = np.nanmean(data, 0), np.nanmin(data, 0), np.nanmax(data, 0)
    style = line_style(len(ax.get_lines()), width)  # dash and marker as well as colour, as the study curves
    ax.plot(x[:width], mean, label=plain(label, 24), **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(rows) > 1:
        ax.fill_between(x[:width], low, high, color=style["color"], alpha=0.2)


def _log_if_wide(ax, values) -> None:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


def depth_figure(results: StudyResults, probe: str, ylabel: str, epochs=(0, 1)) -> Figure | None:
    """A per-layer probe against depth, one panel per epoch (at initialisation, after the first epoch)."""
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, len(epochs), sharey=True)
    drawn = False
    for ax, epoch in zip(axes, epochs):
        values = []
        for variant in results.variants:
            rows = [_layer_values(r, epoch, probe) for r in results.runs_of(variant) if r.status != "failed"]
            rows = [r for r in rows if r]
            if not rows:
                continue
            _band(ax, np.arange(1, max(map(len, rows)) + 1), rows, variant)
            values += [v for r in rows for v in r]
            drawn = True
        _log_if_wide(ax, values)
        ax.set_title("at initialisation" if epoch == 0 else f"after epoch {epoch}")
        ax.set_xlabel("layer (input to output)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    if drawn:
        axes[-1].legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="best")
    fit(fig, [axes])
    return fig if drawn else None


def _variant_lines(ax, results: StudyResults, row_of) -> bool:
    """One band per variant over its seeds; `row_of(run)` gives (x, values) or None. True when anything was drawn."""
    drawn = False
    for variant in results.variants:
        rows = [r for r in map(row_of, results.runs_of(variant)) if r is not None and len(r[1])]
        if rows:
            x = max((r[0] for r in rows), key=len)
            _band(ax, np.asarray(x), [r[1] for r in rows], variant)
            drawn = True
    return drawn


def dead_units_figure(results: StudyResults) -> Figure | None:
    """Mean fraction of dead units (over activation layers) per epoch."""
    return epochs_figure(results, "dead", "dead units (fraction)", fraction=True)


def epochs_figure(results: StudyResults, probe: str, ylabel: str, fraction: bool = False) -> Figure | None:
    """A per-layer probe, mean over the layers, per epoch (0: at initialisation)."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()

    def row(run):
        epochs = sorted(run.probes)
        values = [_layer_values(run, e, probe) for e in epochs]
        return epochs, [np.mean(v) if v else np.nan for v in values]

    drawn = _variant_lines(ax, results, row)
    ax.set_xlabel("epoch (0: at initialisation)")
    ax.set_ylabel(ylabel)
    if fraction:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fit(fig, [[ax]])
    return fig if drawn else None


def shift_figure(results: StudyResults, epoch: int) -> Figure | None:
    """Test accuracy when the test images move by k pixels, at `epoch`."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()

    def row(run):
        p = run.probes.get(epoch, {})
        shifts = sorted(int(k.split("@")[1]) for k in p if k.startswith("shift_acc@"))
        return shifts, [100 * p[f"shift_acc@{s}"] for s in shifts]

    drawn = _variant_lines(ax, results, row)
    ax.set_xlabel("shift (pixels, right and down)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"epoch {epoch}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fit(fig, [[ax]])
    return fig if drawn else None


def mechanism_figures(results: StudyResults) -> list[tuple[str, Figure, str]]:
    """(file name, figure, title) of every registered probe that has a figure and something to draw."""
    last = results.report_epochs[-1] if results.report_epochs else None
    out = []
    for name in PROBES.names():
        spec = PROBES.entry(name).meta.get("figure")
        if spec is None:
            continue
        title = spec["title"]
        if spec["kind"] == "depth":
            fig = depth_figure(results, name, spec["axis"])
        elif spec["kind"] == "epochs":
            fig = epochs_figure(results, name, spec["axis"], fraction=spec.get("fraction", True))
        elif spec["kind"] == "shift" and last:
            fig, title = shift_figure(results, last), f"{title}, epoch {last}"
        else:
            fig = None
        if fig is not None:
            out.append((spec["file"], fig, title))
    return out
