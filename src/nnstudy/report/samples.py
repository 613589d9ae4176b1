"""The study's sample grid: training images with their class names, drawn before its first job starts (so this
module imports matplotlib and numpy only, not the report's statistics)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .run_figures import plain, save_png

# One sample tile in the image grid, in inches (at DPI this is 125 x 150 px).
TILE_W, TILE_H = 1.25, 1.5
GRID_COLS = 8



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
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, idx in zip(axes, picked):
        img = images[idx]
        if img.dtype != np.uint8:  # floats in [0, 1]
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        label = labels[idx]
        name = classes[label] if 0 <= label < len(classes) else str(label)
        ax.set_title(plain(name, 20), fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.3 / (rows * TILE_H), hspace=0.35, wspace=0.1)
    return save_png(fig, path)


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
