"""One unit of work: the seeds of one variant, trained together.

`execute_job(job, emit)` is what every executor (local, process pool, Ray)
runs. It takes only plain, picklable data, writes nothing but its runs'
checkpoints, and reports everything else as events (`executors/events.py`)
through `emit`: the driver process is the only writer of the store and the
run folders (`recorder.py`), wherever the job ran.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from nnstudy import files
from nnstudy.config.schema import RunConfig
from nnstudy.data.study_data import load_study_data
from nnstudy.errors import UserError, first_line
from nnstudy.executors.events import EpochsDone, Event, RunFinished, RunsFailed, Started, ThreadsChanged
from nnstudy.report.run_figures import run_figures
from nnstudy.training import GroupTrainer, TrainOptions
from nnstudy.training.checkpoint import resume_state, save_state
from nnstudy.training.cpu_memory import keep_freed_memory
from nnstudy.training.stacking import trains_stacked
from nnstudy.training.threads import default_cpu_threads
from nnstudy.versions import installed_version

# A full disk or an unwritable folder is not the run's fault: the study stops, a rerun resumes.
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class JobRun:
    """One run of a job: what its worker needs to train and checkpoint it."""

    run_id: int
    seed: int
    variant: str
    identity: str  # its config hash, kept in its checkpoint
    checkpoint_dir: str  # where its checkpoints live: a folder or an object store URI
    config: dict | None = None  # its own RunConfig as a dict, when the stack holds several variants


@dataclass
class Job:
    study: str
    variant: str  # "a+b+c" when the stack holds the runs of several variants
    config: dict  # RunConfig as a dict (the first variant's: what the members share)
    runs: list[JobRun]  # in stack order
    report_epochs: list[int]
    cache_dir: str
    eval_epochs: list[int] = field(default_factory=list)  # evaluated whatever the cadence: report and claim epochs
    train: TrainOptions = field(default_factory=TrainOptions)  # how its trainer trains: device, stacked, probes...
    threads: int = 0  # 0: nnstudy's choice for the job's size (training/threads.py)
    stack_note: str = ""  # why this variant's seeds train one at a time, if they do
    position: int = 0  # its worker's line for progress bars
    cost: float = 0.0  # estimated FLOPs left (cost.py), for the order jobs start in and the time left
    plan_note: str = ""  # its stack in the study's plan: estimated cost, worker and that worker's share

    @property
    def device(self) -> str:
        return self.train.device

    @property
    def run_ids(self) -> list[int]:
        return [r.run_id for r in self.runs]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def mixed(self) -> bool:
        """Whether the stack holds runs of several variants, each with its own config."""
        return any(r.config is not None for r in self.runs)

    @property
    def label(self) -> str:
        if self.mixed:
            return f"{self.variant} [{len(self.seeds)} runs]"
        return f"{self.variant} [seed {','.join(map(str, self.seeds))}]"

    @property
    def stacked(self) -> bool:
        return trains_stacked(RunConfig.model_validate(self.config), len(self.seeds), self.train.vectorize,
                              self.train.stack_of_one)


def library_versions() -> dict:
    import nnstudy
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": _torchvision_version(),
            "numpy": np.__version__, "scikit-learn": installed_version("scikit-learn"), "nnstudy": nnstudy.__version__}


def _torchvision_version() -> str:
    """torchvision's `__version__` (with its build tag, e.g. "+cu130", which the package metadata leaves out), read
    from its version.py: importing torchvision imports torch's compiler, seconds of every job's start-up."""
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    try:
        text = Path(spec.origin).with_name("version.py").read_text()
        return re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", text, re.M).group(1)
    except (AttributeError, OSError, TypeError):  # laid out otherwise: ask the package itself
        import torchvision
        return torchvision.__version__


def is_output_error(exc: BaseException) -> bool:
    return isinstance(exc, UserError) and isinstance(exc.__cause__, OSError) and exc.__cause__.errno in OUTPUT_ERRNOS


def execute_job(job: Job, emit: Callable[[Event], None], data=None,
                threads: Callable[[], int | None] | None = None) -> None:
    """Train the job's runs to the end, resuming from their checkpoints; report through `emit`.

    `data`: the dataset when the executor ships it (Ray, through its object store); None loads it here.
    `threads`: asked between epochs for a new thread count (cores that other jobs freed), if any.
    """
    start = time.perf_counter()
    _set_threads(job)
    files.crash_point("job-start")
    try:
        cfg = RunConfig.model_validate(job.config)
        emit(Started(job.run_ids, _settings(job, cfg), library_versions()))
        data = data if data is not None else load_study_data(cfg, job.cache_dir)
        trainer = _trainer(job, cfg, data)
        restored = _restore(job, trainer, emit)
        trainer.fit(_on_epoch(job, emit, threads, [set(s.probes) for s in trainer.states]),
                    predict_epochs=job.report_epochs, eval_epochs=job.eval_epochs)
        _finish(job, trainer, time.perf_counter() - start, restored, data, emit)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a failing run is recorded, and the study goes on
        message = first_line(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {first_line(exc)}"
        emit(RunsFailed(job.run_ids, message, traceback.format_exc(), stop_study=is_output_error(exc)))


def _set_threads(job: Job) -> None:
    if job.device == "cpu":
        keep_freed_memory()
    if job.threads:
        torch.set_num_threads(job.threads)
    elif job.device == "cpu":
        torch.set_num_threads(default_cpu_threads(job.config["train"]["batch_size"] * len(job.seeds)))


def _settings(job: Job, cfg: RunConfig) -> dict:
    """Facts of how these runs train, recorded with them (the report shows them)."""
    settings = {"device": job.device, "precision": cfg.train.precision, "compile": job.train.compile,
                "vectorized": job.stacked, "threads": torch.get_num_threads(), "host": socket.gethostname()}
    if job.stack_note:
        settings["not_stacked"] = job.stack_note
    if job.mixed:
        settings["stacked_with"] = job.variant  # "a+b+c": variants trained as one stack
    if job.plan_note:
        settings["plan"] = job.plan_note
    return settings


def _trainer(job: Job, cfg: RunConfig, data) -> GroupTrainer:
    options = dataclasses.replace(job.train, label=job.label, position=job.position)
    members = [RunConfig.model_validate(r.config) for r in job.runs] if job.mixed else None
    trainer = GroupTrainer(cfg, data, job.seeds, options, members)
    if os.environ.get("NNSTUDY_CRASH_AT", "").startswith("train-step"):
        trainer.step_hook = files.crash_point  # tests kill the process mid-epoch
    return trainer


def _restore(job: Job, trainer: GroupTrainer, emit) -> int:
    """Continue from the runs' checkpoints, if any; the epochs restored (0: from scratch)."""
    checkpoints = [resume_state(r.checkpoint_dir) for r in job.runs]  # local folders or object store URIs
    if all(c is None for c in checkpoints):
        return 0
    trainer.restore(checkpoints)
    # The checkpoint is the record: the store is made to match it, whatever it held.
    emit(_epochs_event(job, trainer, {k: s.predictions for k, s in enumerate(trainer.states)},
                       {k: s.probes for k, s in enumerate(trainer.states)}, restored=True))
    return trainer.epoch


def _on_epoch(job: Job, emit, threads, sent: list[set]):
    """After each epoch: every run's checkpoint, then its new rows, probes and predictions as one event."""
    def on_epoch(tr: GroupTrainer, predictions: dict[int, torch.Tensor]) -> None:
        for k, run in enumerate(job.runs):
            save_state(run.checkpoint_dir, tr.checkpoint(k), run.identity)
        probes = {k: {e: p for e, p in s.probes.items() if e in (0, tr.epoch) and e not in sent[k]}
                  for k, s in enumerate(tr.states)}
        for k, new in probes.items():
            sent[k].update(new)  # probe epochs already reported
        emit(_epochs_event(job, tr, {k: {tr.epoch: p} for k, p in predictions.items()}, probes, restored=False))
        wanted = threads() if threads is not None else None
        if wanted and wanted != torch.get_num_threads() and tr.epoch < tr.cfg.train.epochs:
            torch.set_num_threads(wanted)
            emit(ThreadsChanged(job.run_ids, wanted, tr.epoch + 1))
    return on_epoch


def _finish(job: Job, trainer: GroupTrainer, wall: float, restored: int, data, emit) -> None:
    """Each run done or diverged, with its folder's figures (drawn here, so that workers draw in parallel)."""
    y_true = data.test_y.numpy()
    for k, run in enumerate(job.runs):
        state = trainer.states[k]
        status = "diverged" if state.diverged else "done"
        predictions = {e: p.numpy().astype(np.int64) for e, p in state.predictions.items()}
        figures = run_figures(run.variant, run.seed, status, state.history, predictions, data.classes, y_true)
        emit(RunFinished(run.run_id, status, trainer.n_params, wall, restored, trainer.epoch - restored,
                         trainer.model_changes, figures))


def _epochs_event(job: Job, tr: GroupTrainer, predictions: dict[int, dict], probes: dict[int, dict],
                  restored: bool) -> EpochsDone:
    return EpochsDone(
        probes={job.run_ids[k]: by_epoch for k, by_epoch in probes.items() if by_epoch},
        epoch=tr.epoch, epochs=tr.cfg.train.epochs, restored=restored,
        # Whole histories on a restore (the store is made to match them), else this epoch's rows only.
        histories={rid: [r for r in tr.states[k].history if restored or r.epoch == tr.epoch]
                   for k, rid in enumerate(job.run_ids)},
        predictions={job.run_ids[k]: {e: p.numpy() for e, p in preds.items()} for k, preds in predictions.items()},
        images=tr.train_x.shape[0] * len(job.seeds), seconds=tr.epoch_seconds)
