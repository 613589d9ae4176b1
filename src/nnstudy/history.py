"""One epoch of one run: what training measures, the events carry and the store keeps."""

from __future__ import annotations

from dataclasses import dataclass


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
