"""What the store hands to the statistics and the report: plain data, no I/O.

These objects are built by `Store.load_results(study)` from the database and
the run folders, so a report can always be rebuilt without training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnstudy.config.schema import SequentialConfig
from nnstudy.history import EpochRow

__all__ = ["METRICS", "EpochRow", "RunResult", "StudyResults"]

# Final metrics every run stores; "higher is better" drives the verdict's sign.
METRICS = {
    "test_acc": True,
    "test_loss": False,
    "train_acc": True,
    "train_loss": False,
}


@dataclass
class RunResult:
    """One (variant, seed) run as stored."""

    run_id: str
    variant: str
    seed: int
    status: str  # pending | running | done | diverged | failed
    config: dict  # fully resolved run config (see nnstudy.config)
    n_params: int = 0
    history: list[EpochRow] = field(default_factory=list)
    # epoch -> predicted class per test image, for the epochs the study reports
    # on (always including the last one).
    predictions: dict[int, np.ndarray] = field(default_factory=dict)
    error: str | None = None
    wall_seconds: float = 0.0
    run_dir: Path | None = None
    # Facts of how this run was trained, recorded by the run itself (not the latest command line):
    # device, precision, compile, vectorized (seeds stacked), threads.
    settings: dict = field(default_factory=dict)
    # Mechanism probes: epoch (0 = at initialisation) -> {"name" or "name|layer": value}; see training/probes.py.
    probes: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def diverged_at(self) -> int | None:
        """The epoch whose loss became non-finite; a diverged run's history ends there."""
        return self.history[-1].epoch if self.status == "diverged" and self.history else None

    def at_epoch(self, epoch: int) -> EpochRow | None:
        for row in self.history:
            if row.epoch == epoch:
                return row
        return None

    @property
    def final(self) -> EpochRow | None:
        return self.history[-1] if self.history else None


@dataclass
class StudyResults:
    """Everything the report needs about one study."""

    name: str
    description: str
    variants: list[str]  # in study order, baseline included
    baseline: str
    seeds: list[int]
    report_epochs: list[int]  # ascending; the last one is the final epoch
    classes: list[str]
    y_true: np.ndarray  # test labels, int64 [n_test]
    dataset: dict  # name, n_train, n_test, image shape, fingerprint, split note
    runs: list[RunResult]
    out_dir: Path  # the study folder (report.html lives here)
    settings: dict = field(default_factory=dict)  # device, precision, vectorized, ...
    claims: list[dict] = field(default_factory=list)  # the study file's claims (config.ClaimConfig as dicts)
    # claim key (its id, else its text) -> its record: first definition, revised, added after results, withdrawn,
    # changes, first and current words (store/claim_log.py)
    claim_history: dict[str, dict] = field(default_factory=dict)
    sequential: SequentialConfig | None = None  # the study's [sequential] table, validated, if any
    grid: dict | None = None  # factors and each cell's coordinates (config.GridConfig as a dict), if any
    overrides: list[str] = field(default_factory=list)  # the KEY=VALUE settings applied to the study file
    # (run, epoch) -> its confusion matrix, computed once: claims, their first definitions and the index ask for
    # the same ones many times (stats/claim_metrics.py).
    confusions: dict = field(default_factory=dict, repr=False, compare=False)

    def runs_of(self, variant: str) -> list[RunResult]:
        return sorted((r for r in self.runs if r.variant == variant), key=lambda r: r.seed)
