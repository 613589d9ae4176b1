"""The study's sample grid: training images with their class names, drawn before its first job starts (so this
module imports matplotlib and numpy only, not the report's statistics)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.transforms import Bbox, ScaledTranslation

from .run_figures import plain, save_png

# One sample tile in the image grid, in inches (at DPI this is 125 x 150 px).
TILE_W, TILE_H = 1.25, 1.5
GRID_COLS = 8
TITLE_PAD = 6.0  # points between a tile and its class name: matplotlib's default axes title pad


def sample_grid(images, labels, classes, path: Path, n: int = 32) -> Path:
    """Save a grid of up to `n` training images titled with their class names.

    `images` is uint8 [N, C, H, W] with C in {1, 3} (torch or numpy). Images
    are picked round-robin over classes so every class appears if it can.
    The grid has min(n, 8) columns; each tile is 125 x 150 px.
    """
    images = _to_numpy(images)
    labels = _to_numpy(labels).astype(np.int64).ravel()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"sample_grid wants images shaped [N, C, H, W] with C in (1, 3), got {images.shape}")
    picked = _round_robin(labels, min(n, len(labels)))
    cols = max(1, min(GRID_COLS, len(picked)))
    rows = max(1, math.ceil(len(picked) / cols))
    fig = Figure(figsize=(cols * TILE_W, rows * TILE_H))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.3 / (rows * TILE_H), hspace=0.35, wspace=0.1)
    # One axes over the whole figure holds every tile: an axes per tile (with its unused tick machinery) made the
    # grid cost about as much as five other figures, before the first epoch.
    canvas = fig.add_axes((0, 0, 1, 1))
    canvas.axis("off")
    above = fig.transFigure + ScaledTranslation(0, TITLE_PAD / 72, fig.dpi_scale_trans)  # where a title sits
    for box, idx in zip(_tile_boxes(fig, rows, cols, images.shape[2] / images.shape[3]), picked):
        img = images[idx]
        if img.dtype != np.uint8:  # floats in [0, 1]
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        extent = (box.x0, box.x1, box.y0, box.y1)
        if img.shape[0] == 1:
            canvas.imshow(img[0], cmap="gray", vmin=0, vmax=255, extent=extent, aspect="auto")
        else:
            canvas.imshow(np.transpose(img, (1, 2, 0)), extent=extent, aspect="auto")
        label = labels[idx]
        name = classes[label] if 0 <= label < len(classes) else str(label)
        fig.text((box.x0 + box.x1) / 2, box.y1, plain(name, 20), fontsize=8, ha="center", va="baseline",
                 transform=above)
    canvas.set_xlim(0, 1)
    canvas.set_ylim(0, 1)
    return save_png(fig, path)


def _tile_boxes(fig: Figure, rows: int, cols: int, aspect: float) -> list[Bbox]:
    """Each grid cell (row by row, in figure coordinates) shrunk to the images' height/width `aspect` and
    centred: where an aspect-equal axes in that cell of `fig`'s subplot grid shows its image."""
    bottoms, tops, lefts, rights = GridSpec(rows, cols, figure=fig).get_grid_positions(fig)
    fig_aspect = fig.get_figheight() / fig.get_figwidth()
    cells = [Bbox.from_extents(lefts[c], bottoms[r], rights[c], tops[r]) for r in range(rows) for c in range(cols)]
    return [cell.shrunk_to_aspect(aspect, cell, fig_aspect).anchored("C", cell) for cell in cells]


def _round_robin(labels: np.ndarray, n: int) -> list[int]:
    """First image of each class, then the second of each, ... up to n indices."""
    queues = {c: list(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    picked: list[int] = []
    while len(picked) < n and any(queues.values()):
        for c in sorted(queues):
            if queues[c] and len(picked) < n:
                picked.append(int(queues[c].pop(0)))
    return picked


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)
