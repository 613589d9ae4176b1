"""Each metric's resolution: the smallest change it can show, the floor of the evidence rule's spread.

A claim metric declares its step in its registry entry (`resolution=`, see
`claim_metrics.py`): "test_images" (a share of the test images: 1/N),
"train_images" (a share of the training images, over an epoch as trained),
"shift_images" (a share of the probes' fixed test subset), "class_images" (a
share of one class's test images, the class named after "@"), "epoch" (a
whole number of epochs). A metric with no step declared (losses, gradient
norms, ratios) is known to the 4 significant digits the report prints
(`evidence.relative_floor`). The comparisons' metrics (test_acc, test_loss,
train_acc, train_loss) are claim metrics too, so both read their step here.
"""

from __future__ import annotations

import numpy as np

from nnstudy.registry import CLAIM_METRICS

from . import claim_metrics  # noqa: F401  (registers the metrics and their steps)
from .evidence import relative_floor

SHIFT_TEST_IMAGES = 1000  # training.probes.SHIFT_TEST_IMAGES (not imported: stats stays free of torch)


def _count(results, key: str) -> int:
    dataset = results.dataset if isinstance(getattr(results, "dataset", None), dict) else {}
    return int(dataset.get(key) or 0)


def _class_count(results, name: str) -> int:
    classes = list(getattr(results, "classes", []) or [])
    if name not in classes:
        return 0
    y_true = getattr(results, "y_true", None)
    return int((np.asarray(y_true) == classes.index(name)).sum()) if y_true is not None else 0


def metric_step(metric: str, results) -> float | None:
    """The metric's step in its own unit, or None when it has none (or the study lacks the count)."""
    name, _, arg = metric.partition("@")
    kind = CLAIM_METRICS.entry(name).meta.get("resolution") if name in CLAIM_METRICS else None
    if kind == "epoch":
        return 1.0
    count = {"test_images": lambda: _count(results, "n_test"),
             "train_images": lambda: _count(results, "n_train"),
             "shift_images": lambda: min(SHIFT_TEST_IMAGES, _count(results, "n_test")),
             "class_images": lambda: _class_count(results, arg.partition("@")[0]),
             }.get(kind, lambda: 0)()
    return 1.0 / count if count > 0 else None


def resolution(metric: str, results, *means: float) -> float:
    """The floor of the spread for a difference of ``metric`` between sides with these ``means``."""
    step = metric_step(metric, results)
    return step if step is not None else relative_floor(*means)


def describe(metric: str, results, floor: float) -> str:
    """The floor in words: "one test image (0.28 pp)", "one epoch", "4 significant digits (1e-05)"."""
    name = metric.partition("@")[0]
    kind = CLAIM_METRICS.entry(name).meta.get("resolution") if name in CLAIM_METRICS else None
    if metric_step(metric, results) is None:
        return f"4 significant digits ({floor:.2g})"
    if kind == "epoch":
        return "one epoch"
    unit = {"test_images": "test image", "train_images": "training image", "shift_images": "probe test image",
            "class_images": "image of the class"}[kind]
    return f"one {unit} ({100 * floor:.2g} pp)"
