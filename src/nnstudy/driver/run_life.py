"""A run's life: one (variant, seed) of a study, from its row in the store to its finished folder.

    PENDING, then RUNNING once a job starts it, then DONE (or DIVERGED) when its last epoch is in and its
    folder is written, or FAILED; a changed config or --force sends it back to PENDING, from scratch.

This module alone changes a run's status and owns its folder: the files' names, when a finished run is
complete, where its checkpoints live and that one is written after every epoch. The planner brings the runs
in line with the study (`sync_runs`), jobs checkpoint through `training.checkpoint.save_state` / `resume_state` wherever they
train, and the recorder moves each run along with its job's events (`mark_running`, `Run.finish`, `Run.fail`).
"""

from __future__ import annotations

import csv
import functools
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnstudy import files, run_status
from nnstudy.config import StudyConfig, config_hash
from nnstudy.store import Store
from nnstudy.store.db import RunRow
from nnstudy.store.results import EpochRow
from nnstudy.training import checkpoint as ck

# A run folder: runs/<variant>/seed-<k>/ under the study's folder.
CONFIG, HISTORY, METRICS, PREDICTIONS = "config.json", "history.csv", "metrics.json", "predictions.npy"
CURVES, CONFUSION = "curves.png", "confusion.png"


def predictions_file(epoch: int) -> str:
    """The test predictions kept at a report epoch (and the last)."""
    return f"predictions-epoch{epoch}.npy"


@dataclass
class Run:
    row: RunRow  # as the store holds it
    checkpoint_dir: str  # its run folder, or ROOT/<study>/<variant>/seed-<k> with --checkpoint-dir ROOT

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def folder(self) -> Path:
        return self.row.run_dir

    def is_complete(self, store: Store) -> bool:
        """A finished run has every epoch's metrics in the store and its files in its folder."""
        n = store.epoch_count(self.id)
        files_there = (self.folder / METRICS).exists() and (
            self.row.status == "diverged" or (self.folder / PREDICTIONS).exists())
        return n > 0 and n == self.row.epochs_done and files_there

    def save_predictions(self, epoch: int, predictions: np.ndarray) -> Path:
        return _save_npy(self.folder / predictions_file(epoch), predictions)

    def finish(self, store: Store, status: str, history: list[EpochRow], n_params: int, wall_seconds: float,
               settings: dict, figures: dict[str, bytes], study: str, keep_epochs: list[int], y_true: np.ndarray,
               classes: list[str]) -> None:
        """DONE or DIVERGED: the folder's files written, then the row; the checkpoint before the last goes."""
        predictions = {e: np.load(path, allow_pickle=False) for e in keep_epochs
                       if e <= len(history) and (path := self.folder / predictions_file(e)).exists()}
        final = history[-1]
        last = predictions.get(final.epoch) if status == "done" else None
        config = {"study": study, "variant": self.row.variant, "seed": self.row.seed, **self.row.config,
                  "settings": settings, "n_params": n_params}
        artifacts = {
            "config": files.write_json(self.folder / CONFIG, config),
            "history": files.write_text(self.folder / HISTORY, _history_csv(history)),
            "metrics": files.write_json(self.folder / METRICS, _metrics(final, y_true, last, classes)),
        }
        if (self.folder / ck.CHECKPOINT).exists():
            artifacts["checkpoint"] = self.folder / ck.CHECKPOINT
        if last is not None:
            artifacts["predictions"] = _save_npy(self.folder / PREDICTIONS, last)
        for name, png in figures.items():
            artifacts[Path(name).stem] = files.write_bytes(self.folder / name, png)
        store.finish_run(self.id, status, n_params, wall_seconds, {k: str(p) for k, p in artifacts.items()},
                         settings or None)
        if Path(self.checkpoint_dir) == self.folder:
            (self.folder / ck.PREVIOUS_CHECKPOINT).unlink(missing_ok=True)

    def fail(self, store: Store, message: str, traceback_text: str = "") -> None:
        store.fail_run(self.id, message, traceback_text)


def mark_running(store: Store, run_ids: list[int], settings: dict, versions: dict) -> None:
    """RUNNING: a job started them (an attempt, even if its set-up then fails), with how they train."""
    store.mark_running(run_ids, settings, versions)


# --- the planner's side: the store's runs made to match the study file and the folders ---------------------------
def sync_runs(store: Store, study: StudyConfig, study_dir: Path, fingerprints: dict[str, str], force: bool, log,
              checkpoint_root: str | None = None) -> list[Run]:
    """Every (variant, seed) of the study as a Run, its row made to match the study file and what its folder holds.

    A run folder is resumed (or restored, when it holds the final checkpoint)
    only when its checkpoint carries this run's identity; a finished run whose
    record is incomplete is reopened, so that done always means "has its metrics".
    `fingerprints`: each variant's dataset fingerprint.
    """
    runs = []
    for vname, cfg in study.variants.items():
        for seed in study.seeds:
            run_dir = study_dir / "runs" / vname / f"seed-{seed}"
            identity = config_hash(cfg, seed, fingerprints[vname])
            row, reset = store.sync_run(study.name, vname, seed, cfg.model_dump(mode="json"), identity,
                                        fingerprints[vname], run_dir, force)
            run = Run(row, checkpoint_folder(checkpoint_root, study.name, row))
            where = f"{study.name}: {vname} seed {seed}"
            held = functools.cache(lambda run=run: ck.checkpoint_identity(run.checkpoint_dir))  # read once (a download)
            if (run_dir.exists() or ck.has_checkpoint(run.checkpoint_dir)) and (
                    reset or (row.status not in run_status.TRAINED and held() != identity)):
                if run_dir.exists():  # results of another config (or of --force): never resumed
                    shutil.rmtree(run_dir)
                ck.remove_checkpoints(run.checkpoint_dir)
                if not reset:  # no checkpoint at all: a write was cut short before the run's first one
                    what = "another config's results" if held() is not None else "no checkpoint yet"
                    print(f"{where}: its run folder held {what}; retraining from scratch", file=log)
            elif row.status in run_status.TRAINED and not run.is_complete(store):
                print(f"{where}: marked {row.status} but its record is incomplete; "
                      + ("restoring it from its checkpoint" if held() == identity else "retraining it"), file=log)
                store.reopen_run(row.id)
                run.row = store.run(study.name, vname, seed)
            elif row.status == "pending" and held() == identity:
                print(f"{where}: not in the store, but its run folder holds its checkpoint; resuming from there",
                      file=log)
            runs.append(run)
    dropped = store.drop_runs_except(study.name, {(v, s) for v in study.variants for s in study.seeds})
    if dropped:
        print(f"{study.name}: {dropped} stored runs are no longer in the study and were dropped from it", file=log)
    return runs


def reload(store: Store, run: Run) -> Run:
    """The run as the store now holds it (after a job ended)."""
    return Run(store.run(run.row.study, run.row.variant, run.row.seed), run.checkpoint_dir)


def checkpoint_folder(root: str | None, study: str, row: RunRow) -> str:
    """A run's checkpoint folder: its run folder, or ROOT/<study>/<variant>/seed-<k> with --checkpoint-dir ROOT."""
    return str(row.run_dir) if root is None else ck.checkpoint_folder(root, study, row.variant, f"seed-{row.seed}")


def start_epochs(stacks: list[list[Run]], alone: list[Run] = ()) -> dict[int, int]:
    """run id -> the epoch it resumes from, each stack's runs rolled back to one epoch where their checkpoints allow
    (a crash between two runs' checkpoint writes; resumed apart, they would train in another stack).

    Call only while no job runs: the temp files of writes cut short by a dead worker or node are removed first.
    """
    for run in [r for runs in stacks for r in runs] + list(alone):
        ck.remove_temp_files(run.checkpoint_dir)
    out = {}
    for runs in stacks:
        epochs = ck.align_checkpoints([r.checkpoint_dir for r in runs])
        out.update({r.id: epochs[r.checkpoint_dir] for r in runs})
    return out


def remove_stale_temp_files(study_dir: Path) -> None:
    """Temp files of writes cut short by a crash. Only while we hold the lock and no worker runs."""
    for stale in study_dir.rglob(".*.tmp") if study_dir.is_dir() else ():
        stale.unlink(missing_ok=True)


# --- the folder's files --------------------------------------------------------------------------------------
def _save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.int64))
    return files.write_bytes(path, buf.getvalue())


def _history_csv(history: list[EpochRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"])
    for r in history:
        writer.writerow([r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr, round(r.seconds, 3)])
    return buf.getvalue()


def _metrics(final: EpochRow, y_true: np.ndarray, predictions, classes: list[str]) -> dict:
    from sklearn.metrics import classification_report

    from nnstudy.stats.per_class import confusion

    out = {"epoch": final.epoch, "train_loss": final.train_loss, "train_acc": final.train_acc,
           "test_loss": final.test_loss, "test_acc": final.test_acc}
    if predictions is not None:
        out["classification_report"] = classification_report(y_true, predictions, labels=list(range(len(classes))),
                                                              target_names=classes, output_dict=True, zero_division=0)
        out["confusion_matrix"] = confusion(y_true, predictions, len(classes)).tolist()
    return out
