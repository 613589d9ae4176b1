"""The sample grid draws every tile into one axes: it must show what an aspect-equal axes per tile, titled with
its class name (how it was drawn before, and what a reader expects of a subplot grid), shows."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from nnstudy.report.run_figures import plain, png_bytes
from nnstudy.report.samples import GRID_COLS, TILE_H, TILE_W, _round_robin, sample_grid

CLASSES = ["airplane", "automobile", "bird", "a $2 cat with a very long name", "deer"]


def _subplot_grid(images: np.ndarray, labels: np.ndarray, n: int) -> bytes:
    """The grid drawn the plain way: a subplot per tile, its image shown with imshow and titled."""
    picked = _round_robin(labels, n)
    cols = min(GRID_COLS, len(picked))
    rows = math.ceil(len(picked) / cols)
    fig = Figure(figsize=(cols * TILE_W, rows * TILE_H))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, idx in zip(axes, picked):
        img = images[idx]
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(plain(CLASSES[labels[idx]], 20), fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.3 / (rows * TILE_H), hspace=0.35, wspace=0.1)
    return png_bytes(fig)


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB")).astype(int)


@pytest.mark.parametrize("n, shape, floats", [(32, (3, 32, 32), False), (5, (1, 28, 28), False),
                                              (13, (3, 20, 40), True), (9, (1, 8, 8), False)])
def test_the_grid_shows_what_an_axes_per_tile_shows(tmp_path, n, shape, floats):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (60, *shape)).astype(np.uint8)
    if floats:
        images = images / 255.0
    labels = np.arange(60) % len(CLASSES)
    mine = _pixels(sample_grid(images, labels, CLASSES, tmp_path / "samples.png", n=n).read_bytes())
    plain_way = _pixels(_subplot_grid(images, labels, n))
    assert mine.shape == plain_way.shape
    differ = (mine != plain_way).any(axis=-1)
    # Tiles and titles land on the same pixels; a tile edge may round to the next pixel row (seen: 5 of 93,750).
    assert differ.mean() < 1e-3, f"{differ.sum()} pixels differ"
    assert (mine < 250).any(axis=-1).mean() > 0.2  # and there is a picture: not two blank pages


def test_a_misplaced_tile_is_seen(tmp_path):
    """The comparison above can fail: the same grid one pixel row lower differs on many pixels."""
    images = np.random.default_rng(0).integers(0, 256, (10, 1, 28, 28)).astype(np.uint8)
    labels = np.arange(10) % len(CLASSES)
    mine = _pixels(sample_grid(images, labels, CLASSES, tmp_path / "samples.png", n=8).read_bytes())
    shifted = np.roll(mine, 1, axis=0)
    assert (mine != shifted).any(axis=-1).mean() > 1e-2
