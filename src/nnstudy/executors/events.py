"""What a job reports to the driver, in order, wherever it runs.

Events are plain picklable data: the local executor hands them over in
process, the process pool through a pipe, Ray through a queue. The driver's
`Recorder` turns them into the store's rows and the run folders' files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnstudy.history import EpochRow


@dataclass
class Started:
    """The job's runs are under way (counts an attempt, even if set-up then fails)."""

    run_ids: list[int]
    settings: dict  # device, precision, compile, vectorized, threads, host: facts of these runs
    versions: dict


@dataclass
class EpochsDone:
    """Runs' epoch rows: their whole history when `restored` (read back from checkpoints), else epoch `epoch`'s."""

    epoch: int
    epochs: int  # the runs' planned number of epochs
    restored: bool
    histories: dict[int, list[EpochRow]]
    predictions: dict[int, dict[int, np.ndarray]]  # run id -> epoch -> predicted test labels (new ones only)
    probes: dict[int, dict[int, dict[str, float]]] = field(default_factory=dict)  # run id -> epoch -> probes (new ones)
    images: int = 0  # training images this epoch, all seeds together
    seconds: float = 0.0


@dataclass
class ThreadsChanged:
    """From epoch `epoch` on the job trains on `threads` threads (cores freed by jobs that finished)."""

    run_ids: list[int]
    threads: int
    epoch: int


@dataclass
class RunFinished:
    run_id: int
    status: str  # done | diverged
    n_params: int
    wall_seconds: float
    epochs_restored: int  # from a checkpoint
    epochs_trained: int  # in this attempt
    model_changes: dict | None = None  # what nnstudy changed in a user's network, e.g. {"init": [layer names]}
    figures: dict[str, bytes] | None = None  # the run folder's PNGs, drawn where the run trained


@dataclass
class RunsFailed:
    run_ids: list[int]
    message: str
    traceback: str = ""
    stop_study: bool = False  # the output folder is unwritable or full: not the runs' fault


@dataclass
class WorkerLost:
    """The process or node running the job died without a word (the executor says so, not the job)."""

    reason: str


@dataclass
class JobEnded:
    """The job returned; nothing more comes from it."""


Event = Started | EpochsDone | ThreadsChanged | RunFinished | RunsFailed | WorkerLost | JobEnded
