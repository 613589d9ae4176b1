"""The single writer: the driver turns job events into store rows and run-folder files.

Jobs (in this process, in worker processes or on Ray nodes) write only their
checkpoints; everything a report reads is written here, by the process that
ran `nnstudy run`. One seed's failure to write its files fails that seed
alone; a full disk or an unwritable folder stops the study (a rerun resumes).
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import time
from pathlib import Path

import numpy as np

from nnstudy.errors import UserError
from nnstudy.executors.events import EpochsDone, JobEnded, RunFinished, RunsFailed, Started, ThreadsChanged, WorkerLost
from nnstudy.executors.job import Job, is_output_error
from nnstudy.store import Store, files
from nnstudy.store.results import EpochRow, RunResult
from nnstudy.training.checkpoint import CHECKPOINT, PREVIOUS_CHECKPOINT


class Recorder:
    """Writes what jobs report; remembers which jobs were lost and whether they had started."""

    def __init__(self, store: Store, rows, classes: list[str], y_true: np.ndarray, log, workers: int = 1,
                 epoch_lines: bool | None = None):
        self.store, self.classes, self.y_true, self.log = store, classes, y_true, log
        self.rows = {r.id: r for r in rows}
        self.workers = max(1, workers)
        self.settings: dict[int, dict] = {}
        self.histories: dict[int, list[EpochRow]] = {}
        self.lost: list[tuple[Job, bool]] = []  # (job, whether it had started)
        self._started: set[int] = set()
        # One line per trained epoch when nobody watches a progress bar (a log file, CI, nohup).
        self.epoch_lines = (not getattr(log, "isatty", lambda: False)()) if epoch_lines is None else epoch_lines
        self.clock = StudyClock(self.workers)

    def plan(self, jobs: list[Job]) -> None:
        for job in jobs:
            done = min(self.rows[r].epochs_done for r in job.run_ids)
            self.clock.plan(id(job), max(0, job.config["train"]["epochs"] - done), job.cost)

    # --- events ------------------------------------------------------------------------------
    def handle(self, job: Job, event) -> None:
        if isinstance(event, Started):
            self.clock.started(id(job))
            self._started.update(event.run_ids)
            for rid in event.run_ids:
                self.settings[rid] = event.settings
            self.store.mark_running(event.run_ids, event.settings, event.versions)
        elif isinstance(event, EpochsDone):
            self._epochs(job, event)
        elif isinstance(event, ThreadsChanged):
            for rid in event.run_ids:  # a fact of the run: the report's settings show it
                settings = self.settings.setdefault(rid, {})
                settings["threads_from_epoch"] = {**settings.get("threads_from_epoch", {}), str(event.epoch): event.threads}
            self.store.update_settings({rid: self.settings[rid] for rid in event.run_ids})
            print(f"  {job.label}: {event.threads} thread(s) from epoch {event.epoch} (a core freed up)", file=self.log,
                  flush=True)
        elif isinstance(event, RunFinished):
            self._finish(job, event)
        elif isinstance(event, RunsFailed):
            if event.stop_study:
                raise UserError(event.message)
            for rid in event.run_ids:
                self.store.fail_run(rid, event.message, event.traceback)
                self._say(rid, f"failed ({event.message})")
        elif isinstance(event, WorkerLost):
            self.lost.append((job, any(r in self._started for r in job.run_ids)))
            self.clock.ended(id(job))
        elif isinstance(event, JobEnded):
            self.clock.ended(id(job))

    def _epochs(self, job: Job, event: EpochsDone) -> None:
        for rid, by_epoch in event.predictions.items():
            for epoch, preds in by_epoch.items():
                _save_npy(self.rows[rid].run_dir / f"predictions-epoch{epoch}.npy", preds)
        for rid, rows in event.histories.items():
            self.histories[rid] = list(rows) if event.restored else self.histories.get(rid, []) + list(rows)
        self.store.record_epochs(event.histories, replace=event.restored)
        if event.probes:
            self.store.record_probes(event.probes, replace=event.restored)
        self.clock.epoch(id(job), event.epochs - event.epoch, event.seconds, event.restored)
        if event.restored:
            return
        if self.epoch_lines:
            left = self.clock.seconds_left()
            accs = [h[-1].test_acc for h in event.histories.values()
                    if h and h[-1].epoch == event.epoch and math.isfinite(h[-1].test_acc)]
            acc = f"mean test acc {np.mean(accs):.2%}" if accs else "every seed diverged"
            settings = self.settings.get(job.run_ids[0], {})
            changes = {int(e): n for e, n in settings.get("threads_from_epoch", {}).items() if int(e) <= event.epoch}
            threads = changes[max(changes)] if changes else settings.get("threads", "?")
            print(f"  {job.label} epoch {event.epoch}/{event.epochs}: {acc}, "
                  f"{event.images / max(event.seconds, 1e-9):,.0f} img/s on {threads} thread(s); "
                  f"study time left ~{_duration(left)}", file=self.log, flush=True)

    def _finish(self, job: Job, event: RunFinished) -> None:
        rid, row = event.run_id, self.rows[event.run_id]
        run_dir = row.run_dir
        if event.model_changes and any(event.model_changes.values()):
            self.settings[rid] = {**self.settings.get(rid, {}), "model_changes": event.model_changes}
        try:
            artifacts = self._write_run_files(job, event, run_dir)
        except Exception as exc:
            if is_output_error(exc):
                raise
            message = f"writing its run folder failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.store.fail_run(rid, message, "")
            self._say(rid, f"failed ({message})")
            return
        self.store.finish_run(rid, event.status, event.n_params, event.wall_seconds, artifacts, self.settings.get(rid))
        for d in job.checkpoint_dirs:
            if Path(d) == run_dir:
                (run_dir / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
        history = self.histories.get(rid, [])
        if event.status == "diverged":
            detail = f"loss not finite at epoch {history[-1].epoch}" if history else "diverged"
        else:
            detail = f"test acc {history[-1].test_acc:.2%}" if history else ""
        if event.epochs_restored and not event.epochs_trained:
            how = f"restored all {event.epochs_restored} epochs from its checkpoint, none retrained"
        elif event.epochs_restored:
            how = f"resumed from its epoch-{event.epochs_restored} checkpoint, {event.epochs_trained} epochs trained"
        else:
            how = f"{event.epochs_trained} epochs trained"
        self._say(rid, f"{event.status} ({detail}; {how}; {event.wall_seconds:.0f}s)")

    def _say(self, rid: int, text: str) -> None:
        row = self.rows[rid]
        print(f"  {row.variant} seed {row.seed}: {text}", file=self.log, flush=True)

    # --- run folder --------------------------------------------------------------------------
    def _write_run_files(self, job: Job, event: RunFinished, run_dir: Path) -> dict[str, str]:
        from nnstudy.report import write_run_figures

        rid, row = event.run_id, self.rows[event.run_id]
        history = self.histories.get(rid) or self.store.epochs(rid)
        predictions = {}
        for e in sorted(set(job.report_epochs) | {job.config["train"]["epochs"]}):
            path = run_dir / f"predictions-epoch{e}.npy"
            if e <= len(history) and path.exists():
                predictions[e] = np.load(path, allow_pickle=False)
        final = history[-1]
        last = predictions.get(final.epoch) if event.status == "done" else None
        config = {"study": job.study, "variant": row.variant, "seed": row.seed, **row.config,
                  "settings": self.settings.get(rid, {}), "n_params": event.n_params}
        artifacts = {
            "config": files.write_json(run_dir / "config.json", config),
            "history": files.write_text(run_dir / "history.csv", _history_csv(history)),
            "metrics": files.write_json(run_dir / "metrics.json", _metrics(final, self.y_true, last, self.classes)),
        }
        if (run_dir / CHECKPOINT).exists():
            artifacts["checkpoint"] = run_dir / CHECKPOINT
        if last is not None:
            artifacts["predictions"] = _save_npy(run_dir / "predictions.npy", last)
        run = RunResult(str(rid), row.variant, row.seed, event.status, config, event.n_params, history,
                        predictions if event.status == "done" else {})
        if event.figures is not None:
            paths = [files.write_bytes(run_dir / name, png) for name, png in event.figures.items()]
        else:
            paths = write_run_figures(run, self.classes, self.y_true, run_dir)
        for path in paths:
            artifacts[path.stem] = path
        return {key: str(p) for key, p in artifacts.items()}


class StudyClock:
    """The study's time left, from each job's seconds per epoch as measured here: the wall time between its
    epochs, so that checkpoints, probes and the hand-over count too (the trainer's own epoch time leaves them out).

    A job's first epoch also holds its set-up: until it has a second, its pace is its trainer's epoch time, grown
    by the share that overheads add elsewhere. A job with no epoch yet takes the measured jobs' pace, scaled by
    their planned costs (`Job.cost`), and at least the time its first epoch has taken so far, set-up aside. Jobs
    start in plan order on the first free one of `slots` workers.
    """

    def __init__(self, slots: int = 1, now=time.monotonic):
        self.slots, self.now = max(1, slots), now
        self.left: dict[int, int] = {}  # job -> epochs left
        self.unit: dict[int, float] = {}  # job -> planned cost of one epoch
        self.since: dict[int, float] = {}  # started job -> when its last epoch ended (or it started)
        self.epochs: dict[int, list[tuple[float, float]]] = {}  # job -> (wall seconds, trainer seconds) per epoch

    def plan(self, job: int, epochs_left: int, cost: float = 0.0) -> None:
        self.left[job] = epochs_left
        self.unit[job] = cost / epochs_left if epochs_left else 0.0

    def started(self, job: int) -> None:
        self.since[job] = self.now()

    def epoch(self, job: int, epochs_left: int, seconds: float = 0.0, restored: bool = False) -> None:
        now = self.now()
        if not restored and job in self.since:
            self.epochs.setdefault(job, []).append((now - self.since[job], seconds))
        self.since[job], self.left[job] = now, epochs_left

    def ended(self, job: int) -> None:
        for d in (self.left, self.since):
            d.pop(job, None)

    def pace(self, job: int) -> float | None:
        """Seconds per epoch of `job`, None while no job has finished an epoch."""
        seen = self.epochs.get(job, [])
        if later := _recent(seen):
            return sum(wall for wall, _ in later) / len(later)
        if seen:
            pairs = [pair for j in self.epochs for pair in _recent(self.epochs[j])]
            trainer = sum(s for _, s in pairs)
            return seen[0][1] * (sum(wall for wall, _ in pairs) / trainer if trainer > 0 else 1.0)
        measured = {j: p for j in self.epochs if (p := self.pace(j)) is not None}
        if not measured:
            return None
        guess = sum(p * self._scale(job, j) for j, p in measured.items()) / len(measured)
        if job in self.since:  # its first epoch has taken this long already
            guess = max(guess, self.now() - self.since[job] - self._setup())
        return guess

    def _setup(self) -> float:
        """Seconds a job takes to start: its first epoch's wall time beyond its later pace, where that shows."""
        shown = [seen[0][0] - self.pace(j) for j, seen in self.epochs.items() if len(seen) > 1]
        return max(0.0, sum(shown) / len(shown)) if shown else 0.0

    def _scale(self, job: int, other: int) -> float:
        """How much longer an epoch of `job` is planned to take than one of `other`: 4x at most either way, as
        the planned costs come from one batch timed before training (far off on a busy machine)."""
        if self.unit.get(job, 0.0) > 0 and self.unit.get(other, 0.0) > 0:
            return min(4.0, max(0.25, self.unit[job] / self.unit[other]))
        return 1.0

    def seconds_left(self) -> float:
        now, running, queued = self.now(), [], []
        for job, left in self.left.items():
            pace = self.pace(job) or 0.0
            if job in self.since:  # its current epoch is under way: at most that one is done
                running.append(max(0.0, left * pace - min(now - self.since[job], pace)))
            else:
                queued.append(left * pace)
        return time_left(running, queued, self.slots)


def _recent(seen: list) -> list:
    """A job's last five epochs, never its first (it holds the job's set-up)."""
    return seen[max(1, len(seen) - 5):]


def time_left(running: list[float], queued: list[float], slots: int) -> float:
    """Seconds until the last job ends: the running jobs' seconds left, then each queued job, in order,
    on whichever worker frees up first."""
    free = list(running) + [0.0] * max(0, slots - len(running))
    heapq.heapify(free)
    for seconds in queued:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free, default=0.0)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.int64))
    return files.write_bytes(path, buf.getvalue())


def _history_csv(history) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"])
    for r in history:
        writer.writerow([r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr, round(r.seconds, 3)])
    return buf.getvalue()


def _metrics(final: EpochRow, y_true: np.ndarray, predictions, classes) -> dict:
    from sklearn.metrics import classification_report, confusion_matrix

    out = {"epoch": final.epoch, "train_loss": final.train_loss, "train_acc": final.train_acc,
           "test_loss": final.test_loss, "test_acc": final.test_acc}
    if predictions is not None:
        labels = list(range(len(classes)))
        out["classification_report"] = classification_report(y_true, predictions, labels=labels, target_names=classes,
                                                              output_dict=True, zero_division=0)
        out["confusion_matrix"] = confusion_matrix(y_true, predictions, labels=labels).tolist()
    return out
