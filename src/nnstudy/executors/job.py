"""One unit of work: the seeds of one variant, trained together, stored as they go.

`execute_job` is what every executor (local, process pool, Ray) runs. It
takes only plain, picklable data and talks to the store itself, so a worker
process needs nothing from its parent.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from nnstudy.config.schema import RunConfig
from nnstudy.errors import UserError
from nnstudy.store import files
from nnstudy.store.db import Store
from nnstudy.store.results import RunResult
from nnstudy.training import GroupTrainer, TrainOptions
from nnstudy.training.cpu_memory import keep_freed_memory
from nnstudy.training.threads import default_cpu_threads

CHECKPOINT = "checkpoint.pt"
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# The checkpoint one epoch earlier, kept so that a crash between two seeds' checkpoint writes
# can be rolled back and the seeds of a variant resume together, as the same stacked group
# (a different grouping changes the last bits of float results).
PREVIOUS_CHECKPOINT = "checkpoint-prev.pt"


@dataclass
class Job:
    out_dir: str
    study: str
    variant: str
    config: dict  # RunConfig as a dict
    run_ids: list[int]
    seeds: list[int]
    run_dirs: list[str]
    report_epochs: list[int]
    classes: list[str]
    cache_dir: str
    device: str = "cpu"
    vectorize: bool = True
    compile: bool = False
    threads: int = 0  # 0: nnstudy's choice for the job's size (training/threads.py)
    progress: bool = True
    position: int = 0

    @property
    def label(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        return f"{self.variant} [seed {seeds}]"


@dataclass
class JobResult:
    variant: str
    seeds: list[int]
    statuses: dict[int, str] = field(default_factory=dict)  # seed -> status
    test_acc: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


def library_versions() -> dict:
    import sklearn
    import torchvision

    import nnstudy
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "nnstudy": nnstudy.__version__}


@lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str | None, cache_dir: str, subset: int | None, test_subset: int | None):
    from nnstudy.data import load_dataset
    return load_dataset(name, data_dir, cache_dir).subset(subset, test_subset)


def load_study_data(cfg: RunConfig, cache_dir: str):
    ds = cfg.dataset
    return _dataset(ds.name, ds.data_dir, str(cache_dir), ds.subset, ds.test_subset)


def load_checkpoint(path: Path, mmap: bool = False) -> dict | None:
    """A run's last checkpoint, or None; a truncated or corrupt file is a clear error.

    `mmap=True` maps the tensors instead of reading them: cheap when only the
    metadata (the epoch) is wanted.
    """
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} is damaged ({type(exc).__name__}: {detail}); delete it to restart that run from scratch, or rerun with --force") from None


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint was written at (0 without one)."""
    ckpt = load_checkpoint(path, mmap=True)
    return ckpt["epoch"] if ckpt else 0


def resume_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run resumes from: the latest, or the previous one if a crash came between their renames."""
    latest = run_dir / CHECKPOINT
    return latest if latest.exists() or not (run_dir / PREVIOUS_CHECKPOINT).exists() else run_dir / PREVIOUS_CHECKPOINT


def align_checkpoints(run_dirs: list[Path]) -> dict[Path, int]:
    """Roll runs of one variant back to a common epoch where their checkpoints allow it.

    A crash between two seeds' checkpoint writes leaves some seeds one epoch ahead; resuming
    them apart would train them in a different stacked group than an uninterrupted run.
    Returns the epoch each run now resumes from.
    """
    epochs = {d: checkpoint_epoch(resume_checkpoint(d)) for d in run_dirs}
    low = min(epochs.values(), default=0)
    for d, e in epochs.items():
        prev = d / PREVIOUS_CHECKPOINT
        if e > low and prev.exists() and checkpoint_epoch(prev) == low:
            os.replace(prev, d / CHECKPOINT)
            epochs[d] = low
        elif e > low == 0:  # the others have not finished one epoch: start this one afresh too
            (d / CHECKPOINT).unlink(missing_ok=True)
            prev.unlink(missing_ok=True)
            epochs[d] = 0
        elif e == low and not (d / CHECKPOINT).exists() and prev.exists():
            os.replace(prev, d / CHECKPOINT)
    return epochs


def execute_job(job: Job) -> JobResult:
    start = time.perf_counter()
    if job.device == "cpu":
        keep_freed_memory()
    if job.threads:
        torch.set_num_threads(job.threads)
    elif job.device == "cpu":
        torch.set_num_threads(default_cpu_threads(job.config["train"]["batch_size"] * len(job.seeds)))
    files.crash_point("job-start")
    store = Store(job.out_dir)
    result = JobResult(job.variant, job.seeds)
    try:
        store.mark_running(job.run_ids, job.device, library_versions())  # counts the attempt even if setup fails
        cfg = RunConfig.model_validate(job.config)
        data = load_study_data(cfg, job.cache_dir)
        options = TrainOptions(device=job.device, vectorize=job.vectorize, compile=job.compile,
                               progress=job.progress, label=job.label, position=job.position)
        trainer = GroupTrainer(cfg, data, job.seeds, options)
        run_dirs = [Path(d) for d in job.run_dirs]
        checkpoints = [load_checkpoint(resume_checkpoint(d)) for d in run_dirs]
        if any(c is not None for c in checkpoints):
            trainer.restore(checkpoints)

        def on_epoch(tr: GroupTrainer, predictions: dict[int, torch.Tensor]) -> None:
            for k, d in enumerate(run_dirs):
                if k in predictions:
                    _save_npy(d / f"predictions-epoch{tr.epoch}.npy", predictions[k].numpy())
                with files.atomic_path(d / CHECKPOINT) as tmp:
                    torch.save(tr.checkpoint(k), tmp)
                    if (d / CHECKPOINT).exists():
                        os.replace(d / CHECKPOINT, d / PREVIOUS_CHECKPOINT)
            store.record_epochs({rid: tr.states[k].history for k, rid in enumerate(job.run_ids)})

        trainer.fit(on_epoch, predict_epochs=job.report_epochs)
        for k, (rid, d) in enumerate(zip(job.run_ids, run_dirs)):
            status = _finish(store, trainer, k, rid, d, job, data, time.perf_counter() - start)
            result.statuses[job.seeds[k]] = status
            result.test_acc[job.seeds[k]] = trainer.states[k].history[-1].test_acc
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a failing run is recorded, and the study goes on
        if isinstance(exc, UserError) and isinstance(exc.__cause__, OSError) and exc.__cause__.errno in _OUTPUT_ERRNOS:
            raise  # a full disk or unwritable folder is not the run's fault: stop; a rerun resumes
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, UserError):
            message = f"{type(exc).__name__}: {message}"
        tb = traceback.format_exc()
        for seed, rid in zip(job.seeds, job.run_ids):
            store.fail_run(rid, message, tb)
            result.statuses[seed] = "failed"
            result.errors[seed] = message
    finally:
        store.close()
    result.seconds = time.perf_counter() - start
    return result


def _finish(store: Store, trainer: GroupTrainer, k: int, run_id: int, run_dir: Path, job: Job, data, wall: float) -> str:
    """Write the run's folder, then mark it done in one transaction."""
    from nnstudy.report import write_run_figures

    state = trainer.states[k]
    history = state.history
    final = history[-1]
    status = "diverged" if state.diverged or not math.isfinite(final.test_loss) else "done"
    epochs = sorted({e for e in job.report_epochs if e <= len(history)} | {len(history)})
    predictions = {e: np.load(run_dir / f"predictions-epoch{e}.npy") for e in epochs if (run_dir / f"predictions-epoch{e}.npy").exists()}
    config = {"study": job.study, "variant": job.variant, "seed": job.seeds[k], **job.config,
              "device": job.device, "vectorized": trainer.stack.stacked, "n_params": trainer.n_params}
    artifacts = {
        "config": files.write_json(run_dir / "config.json", config),
        "history": files.write_text(run_dir / "history.csv", _history_csv(history)),
        "metrics": files.write_json(run_dir / "metrics.json", _metrics(final, data, predictions.get(len(history)), job.classes)),
        "checkpoint": run_dir / CHECKPOINT,
    }
    if len(history) in predictions:
        artifacts["predictions"] = _save_npy(run_dir / "predictions.npy", predictions[len(history)])
    run = RunResult(str(run_id), job.variant, job.seeds[k], status, config, trainer.n_params, history, predictions)
    for path in write_run_figures(run, job.classes, data.test_y.numpy(), run_dir):
        artifacts[path.stem] = path
    store.finish_run(run_id, status, trainer.n_params, wall, {key: str(p) for key, p in artifacts.items()})
    (run_dir / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
    return status


def _save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, array)
    return files.write_bytes(path, buf.getvalue())


def _history_csv(history) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"])
    for r in history:
        writer.writerow([r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr, round(r.seconds, 3)])
    return buf.getvalue()


def _metrics(final, data, predictions, classes) -> dict:
    from sklearn.metrics import classification_report, confusion_matrix

    out = {"epoch": final.epoch, "train_loss": final.train_loss, "train_acc": final.train_acc,
           "test_loss": final.test_loss, "test_acc": final.test_acc}
    if predictions is not None:
        y = data.test_y.numpy()
        labels = list(range(len(classes)))
        out["classification_report"] = classification_report(y, predictions, labels=labels, target_names=classes,
                                                              output_dict=True, zero_division=0)
        out["confusion_matrix"] = confusion_matrix(y, predictions, labels=labels).tolist()
    return out
