"""The single writer: the driver turns job events into store rows and run-folder files.

Jobs (in this process, in worker processes or on Ray nodes) write only their
checkpoints; everything a report reads is written here, by the process that
ran `nnstudy run`, through each run's life (run_life.py). One seed's failure
to write its files fails that seed alone; a full disk or an unwritable folder
stops the study (a rerun resumes).
"""

from __future__ import annotations

import math

import numpy as np

from nnstudy.driver.clock import StudyClock, duration
from nnstudy.driver.run_life import Run, mark_running
from nnstudy.errors import UserError, first_line
from nnstudy.executors.events import EpochsDone, JobEnded, RunFinished, RunsFailed, Started, ThreadsChanged, WorkerLost
from nnstudy.executors.job import Job, is_output_error
from nnstudy.store import Store
from nnstudy.store.results import EpochRow


class Recorder:
    """Writes what jobs report; remembers which jobs were lost and whether they had started."""

    def __init__(self, store: Store, runs: list[Run], classes: list[str], y_true: np.ndarray, log, workers: int = 1,
                 epoch_lines: bool | None = None, clock: StudyClock | None = None, suite: str | None = None):
        self.store, self.classes, self.y_true, self.log = store, classes, y_true, log
        self.runs = {r.id: r for r in runs}
        self.settings: dict[int, dict] = {}
        self.histories: dict[int, list[EpochRow]] = {}
        self.lost: list[tuple[Job, bool]] = []  # (job, whether it had started)
        self._started: set[int] = set()
        # One line per trained epoch when nobody watches a progress bar (a log file, CI, nohup).
        self.epoch_lines = (not getattr(log, "isatty", lambda: False)()) if epoch_lines is None else epoch_lines
        # One clock for every recorder of a suite, so that its lines say the suite's time left.
        self.clock = clock or StudyClock(max(1, workers))
        self.suite = suite  # a suite's name: lines name the study too

    def plan(self, jobs: list[Job]) -> None:
        for job in jobs:
            done = min(self.runs[r].row.epochs_done for r in job.run_ids)
            self.clock.plan(id(job), max(0, job.config["train"]["epochs"] - done), job.cost, len(job.run_ids))

    # --- events ------------------------------------------------------------------------------
    def handle(self, job: Job, event) -> None:
        if isinstance(event, Started):
            self.clock.started(id(job))
            self._started.update(event.run_ids)
            for rid in event.run_ids:
                self.settings[rid] = event.settings
            mark_running(self.store, event.run_ids, event.settings, event.versions)
        elif isinstance(event, EpochsDone):
            self._epochs(job, event)
        elif isinstance(event, ThreadsChanged):
            for rid in event.run_ids:  # a fact of the run: the report's settings show it
                settings = self.settings.setdefault(rid, {})
                settings["threads_from_epoch"] = {**settings.get("threads_from_epoch", {}), str(event.epoch): event.threads}
            self.store.update_settings({rid: self.settings[rid] for rid in event.run_ids})
            print(f"  {job.study + ' ' if self.suite else ''}{job.label}: {event.threads} thread(s) from epoch {event.epoch} (a core freed up)", file=self.log,
                  flush=True)
        elif isinstance(event, RunFinished):
            self._finish(job, event)
        elif isinstance(event, RunsFailed):
            if event.stop_study:
                raise UserError(event.message)
            for rid in event.run_ids:
                self.runs[rid].fail(self.store, event.message, event.traceback)
                self._say(rid, f"failed ({event.message})")
        elif isinstance(event, WorkerLost):
            self.lost.append((job, any(r in self._started for r in job.run_ids)))
            self.clock.ended(id(job))
        elif isinstance(event, JobEnded):
            self.clock.ended(id(job))

    def _epochs(self, job: Job, event: EpochsDone) -> None:
        for rid, by_epoch in event.predictions.items():
            for epoch, preds in by_epoch.items():
                self.runs[rid].save_predictions(epoch, preds)
        for rid, rows in event.histories.items():
            self.histories[rid] = list(rows) if event.restored else self.histories.get(rid, []) + list(rows)
        self.store.record_epochs(event.histories, replace=event.restored)
        if event.probes:
            self.store.record_probes(event.probes, replace=event.restored)
        self.clock.epoch(id(job), event.epochs - event.epoch, event.seconds, event.restored)
        if self.epoch_lines and not event.restored:
            print(self._epoch_line(job, event), file=self.log, flush=True)

    def _epoch_line(self, job: Job, event: EpochsDone) -> str:
        rows = [h[-1] for h in event.histories.values() if h and h[-1].epoch == event.epoch]
        accs = [r.test_acc for r in rows if math.isfinite(r.test_acc)]
        trained = [r.train_acc for r in rows if math.isfinite(r.train_loss)]
        acc = (f"mean test acc {np.mean(accs):.2%}" if accs else
               f"mean train acc {np.mean(trained):.2%} (test set not evaluated this epoch)" if trained else
               "every seed diverged")
        settings = self.settings.get(job.run_ids[0], {})
        changes = {int(e): n for e, n in settings.get("threads_from_epoch", {}).items() if int(e) <= event.epoch}
        threads = changes[max(changes)] if changes else settings.get("threads", "?")
        who = f"{job.study} {job.label}" if self.suite else job.label
        return (f"  {who} epoch {event.epoch}/{event.epochs}: {acc}, "
                f"{event.images / max(event.seconds, 1e-9):,.0f} img/s on {threads} thread(s); "
                f"{'suite' if self.suite else 'study'} time left ~{duration(self.clock.seconds_left())}")

    def _finish(self, job: Job, event: RunFinished) -> None:
        rid, run = event.run_id, self.runs[event.run_id]
        if event.model_changes and any(event.model_changes.values()):
            self.settings[rid] = {**self.settings.get(rid, {}), "model_changes": event.model_changes}
        history = self.histories.get(rid) or self.store.epochs(rid)
        keep = sorted(set(job.report_epochs) | {job.config["train"]["epochs"]})
        try:
            run.finish(self.store, event.status, history, event.n_params, event.wall_seconds,
                       self.settings.get(rid, {}), event.figures or {}, job.study, keep, self.y_true, self.classes)
        except Exception as exc:
            if is_output_error(exc):
                raise
            message = f"writing its run folder failed: {type(exc).__name__}: {first_line(exc)}"
            run.fail(self.store, message)
            self._say(rid, f"failed ({message})")
            return
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
        row = self.runs[rid].row
        who = f"{row.study} {row.variant}" if self.suite else row.variant
        print(f"  {who} seed {row.seed}: {text}", file=self.log, flush=True)
