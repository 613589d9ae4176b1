"""One epoch of one run, and how its probes are keyed: what training measures, the events carry and the store keeps."""

from __future__ import annotations

from dataclasses import dataclass


# What an epoch measures, in EpochRow's order; the test two are NaN on epochs the test set was not evaluated.
EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


@dataclass
class EpochRow:
    """One epoch of one run. Accuracies are fractions in [0, 1]."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float


def probe_key(probe: str, layer: str) -> str:
    """A per-layer probe's key in a run's probes of one epoch (and the store's two columns): "probe|layer"."""
    return f"{probe}|{layer}"


def split_probe_key(key: str) -> tuple[str, str]:
    """(probe, layer) of a key; layer "" for a probe of the whole network."""
    probe, _, layer = key.partition("|")
    return probe, layer


def per_layer(values: dict[str, float], probe: str) -> list[float]:
    """A per-layer probe's values, layer by layer, from a run's probes of one epoch."""
    return [v for key, v in values.items() if key.startswith(probe_key(probe, ""))]
