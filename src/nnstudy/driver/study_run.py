"""Run a study: reach the executor, check every variant, bring the runs in line with the study file, plan the
jobs, train them, write the report.

The plan is idempotent: a run's identity is the hash of its resolved config,
seed and dataset fingerprint, so running a study again only trains what is
missing or changed, and resumes interrupted runs from their last checkpoint.
"""

from __future__ import annotations

import io
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nnstudy import files, run_status
from nnstudy.config import StudyConfig
from nnstudy.data.study_data import load_study_data
from nnstudy.driver.options import RunOptions, resolve_device
from nnstudy.driver.plan import plan_jobs, plan_study, preflight
from nnstudy.driver.recorder import Recorder
from nnstudy.driver.run_life import reload, remove_stale_temp_files, sync_runs
from nnstudy.errors import UserError
from nnstudy.executors import Executor, open_executor
from nnstudy.executors.events import EpochsDone
from nnstudy.store import Store, load_results
from nnstudy.store.load import TEST_LABELS
from nnstudy.training.progress import bars_shown, progress_bar

__all__ = ["RunOptions", "output_lock", "run_study"]


@contextmanager
def output_lock(out: Path):
    """One nnstudy process per output folder; the OS frees the lock if we die."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, rely on SQLite's
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / ".lock", "a")
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror}; fix its permissions or choose another --out") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UserError(f"another nnstudy process is using {out}; wait for it to finish or choose another --out") from None
    try:
        yield
    finally:
        fh.close()


def run_study(study: StudyConfig, source: str, options: RunOptions):
    """Train what is missing, then write the report. Returns (StudyResults, report paths)."""
    from nnstudy.report import build_report

    out, device, log = Path(options.out), resolve_device(options.device), options.log or sys.stderr
    study_dir = out / study.name
    executor = open_executor(options, device)  # before anything is written: a bad address leaves --out as it was
    stacking = preflight(study, options.cache, options, log)  # before anything is written
    with output_lock(out):
        store = Store(out)
        remove_stale_temp_files(study_dir)
        data = load_study_data(study.variants[study.baseline_name], str(options.cache))
        report_epochs = sorted({e for v in study.variants for e in study.epochs_to_report(v)})
        store.save_study(study.name, study.model_dump(mode="json"), _study_info(study, study_dir, data, report_epochs,
                                                                                 device, options), source)
        _save_study_files(study_dir, data)
        fingerprints = {v: load_study_data(cfg, str(options.cache)).fingerprint for v, cfg in study.variants.items()}
        runs = sync_runs(store, study, study_dir, fingerprints, options.force, log, options.checkpoint_dir)
        wanted = (run_status.FAILED,) if options.retry_failed else run_status.TO_TRAIN
        todo = [r for r in runs if r.row.status in wanted]
        _say_what_is_left(study.name, runs, todo, options, log)
        if todo:
            study_plan = plan_study(runs, study, options.cache, options, stacking, executor.slots())
            print(f"{study.name}: {study_plan.describe()}", file=log)

            def plan(left):
                return plan_jobs(left, study_plan, study, report_epochs, options.cache, device, options, stacking)
            _execute(todo, plan, store, study_dir, data, device, executor, options, log)
        results = load_results(store, study.name)
        paths = build_report(results)
        store.close()
    return results, paths


def _study_info(study: StudyConfig, study_dir: Path, data, report_epochs: list[int], device: str,
                options: RunOptions) -> dict:
    base = study.variants[study.baseline_name]
    return {
        "study_dir": str(study_dir.resolve()), "baseline": study.baseline_name, "report_epochs": report_epochs,
        "classes": data.classes,
        "dataset": {"name": base.dataset.name, "n_train": int(data.train_x.shape[0]), "n_test": int(data.test_x.shape[0]),
                    "image_shape": list(data.train_x.shape[1:]), "fingerprint": data.fingerprint, "source": data.source,
                    "split_note": "The train/test split is fixed: every variant and seed sees the same images; seeds change "
                                  "initialisation, data order and augmentation only."},
        "settings": {"device": device, "vectorized": options.vectorize, "compile": options.compile,
                     "precision": ", ".join(sorted({v.train.precision for v in study.variants.values()}))},
    }


def _save_study_files(study_dir: Path, data) -> None:
    from nnstudy.report import sample_grid

    buf = io.BytesIO()
    np.save(buf, data.test_y.numpy())
    files.write_bytes(study_dir / TEST_LABELS, buf.getvalue())
    sample_grid(data.train_x, data.train_y, data.classes, study_dir / "figures" / "samples.png")


def _say_what_is_left(name: str, runs, todo, options: RunOptions, log) -> None:
    skipped = {s: sum(r.row.status == s for r in runs) for s in run_status.ENDED}
    print(f"{name}: {len(runs)} runs; {skipped['done'] + skipped['diverged']} already finished, "
          f"{len(todo)} to train" + (f", {skipped['failed']} failed (rerun them with --retry-failed)"
                                     if skipped["failed"] and not options.retry_failed else ""), file=log)


# A run whose worker died this many times (in this invocation) is failed instead of retried.
_WORKER_DEATHS_TO_FAIL = 2


def _execute(todo, plan, store: Store, study_dir: Path, data, device: str, executor: Executor, options: RunOptions,
             log) -> None:
    """Run the jobs; a job whose worker process (or node) died resumes from its checkpoints.

    Only the dead worker's job is blamed: its runs that had started get a
    strike, and a run with two strikes is failed with a message saying so
    (e.g. a model that does not fit in memory); every other job goes on.
    """
    jobs = plan(todo)
    parallel = executor.parallel(len(jobs))  # jobs at once, for the time left
    executor = executor.for_jobs(len(jobs))  # chosen once: retries after a worker died stay in (fresh) workers
    name = study_dir.name
    for note in executor.notes(options):
        print(f"{name}: {note}", file=log)
    deaths: dict[int, int] = {}
    idle_deaths = 0  # deaths with no run started: workers that die on start-up would loop forever
    runs = {r.id: r for r in todo}
    while jobs:
        recorder = Recorder(store, list(runs.values()), data.classes, data.test_y.numpy(), log,
                            1 if executor.step_bars else parallel, epoch_lines=None if options.progress else False)
        _execute_once(executor, jobs, recorder, name, device, options, log, parallel)
        if not recorder.lost:
            return
        idle_deaths = 0 if any(started for _, started in recorder.lost) else idle_deaths + 1
        if idle_deaths >= _WORKER_DEATHS_TO_FAIL:
            raise UserError("worker processes die before they start any run; run with --executor local "
                            "to see why, or check free memory")
        remove_stale_temp_files(study_dir)  # the dead worker's cut-short writes
        retry = _strike(recorder.lost, runs, deaths, store, executor.lost, log)
        if retry:
            print(f"{name}: a {executor.lost} died; {len(retry)} unfinished run(s) of its job continue from their "
                  "last checkpoint", file=log)
        jobs = plan(retry)
        runs.update({r.id: r for r in retry})


def _strike(lost, runs: dict, deaths: dict[int, int], store: Store, what: str, log) -> list:
    """A strike for each started run of a lost job: a run with two strikes fails, the others are retried."""
    retry = []
    for job, started in lost:
        for rid in job.run_ids:
            deaths[rid] = deaths.get(rid, 0) + started
            run = runs[rid]
            if deaths[rid] >= _WORKER_DEATHS_TO_FAIL:
                run.fail(store, f"its {what} died twice while training it (killed by the operating system, often "
                                "for running out of memory, or a crash in native code); rerun with --retry-failed, "
                                "with fewer --workers if memory is short")
                print(f"  {run.row.variant} seed {run.row.seed}: failed (its {what} died twice)", file=log)
            else:
                retry.append(reload(store, run))
    return retry


def _execute_once(executor: Executor, jobs, recorder: Recorder, name: str, device: str, options: RunOptions,
                  log, parallel: int) -> None:
    recorder.plan(jobs)
    print(f"{name}: training {len(jobs)} job(s) on {device} with {executor.describe()}"
          + (f", most expensive first: {'; '.join(j.label for j in jobs)}" if len(jobs) > 1 else f": {jobs[0].label}"),
          file=log)
    overall = None
    if options.progress and not executor.step_bars and bars_shown():  # a terminal, or a widget in Jupyter
        total = sum(len(j.seeds) * j.config["train"]["epochs"] for j in jobs)
        # Below the workers' own bars.
        overall = progress_bar(total=total, desc=f"{name} epochs", unit="epoch", position=parallel, leave=False)

    def handle(job, event) -> None:
        recorder.handle(job, event)
        if overall is not None and isinstance(event, EpochsDone) and not event.restored:
            overall.update(len(job.seeds))

    try:
        executor.run(jobs, handle)
    finally:
        if overall is not None:
            overall.close()
