"""Run a study: reach the executor, check every variant, bring the runs in line with the study file, plan the
jobs, train them, write the report.

The plan is idempotent: a run's identity is the hash of its resolved config,
seed and dataset fingerprint, so running a study again only trains what is
missing or changed, and resumes interrupted runs from their last checkpoint.
"""

from __future__ import annotations

import importlib
import io
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nnstudy import files, run_status
from nnstudy.config import StudyConfig
from nnstudy.data.study_data import load_study_data
from nnstudy.driver.clock import StudyClock
from nnstudy.driver.cost import gflop
from nnstudy.driver.end_costs import EndCosts, end_costs
from nnstudy.driver.options import RunOptions, resolve_device
from nnstudy.driver.plan import plan_study, preflight
from nnstudy.driver.pool import first_free
from nnstudy.driver.recorder import Recorder
from nnstudy.driver.run_life import reload, remove_stale_temp_files, sync_runs
from nnstudy.errors import UserError
from nnstudy.executors import Executor, open_executor
from nnstudy.executors.events import EpochsDone
from nnstudy.store import Store, load_results
from nnstudy.store.load import TEST_LABELS
from nnstudy.training.progress import bars_shown, progress_bar

__all__ = ["RunOptions", "StudyPart", "execute_parts", "import_in_background", "output_lock", "prepare_study", "run_study"]


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
    out, device, log = Path(options.out), resolve_device(options.device), options.log or sys.stderr
    executor = open_executor(options, device)  # before anything is written: a bad address leaves --out as it was
    stacking = preflight(study, options.cache, options, log)  # before anything is written
    with output_lock(out):
        store = Store(out)
        part = prepare_study(study, source, options, store, device, executor.slots(), stacking, log)
        if part.todo:
            import_in_background("nnstudy.report.build")
            execute_parts([part], study.name, store, device, executor, options, log)
        from nnstudy.report import build_report

        results = load_results(store, study.name)
        paths = build_report(results)
        store.close()
    return results, paths


def import_in_background(module: str) -> None:
    """Start importing `module` in a thread: the report's libraries (scipy, scikit-learn, jinja2; over a second of
    CPU) load while the jobs train, neither before the first epoch nor after the last. Its first use waits for the
    import to end (Python's import lock) and raises its error, if any."""
    def load() -> None:
        try:
            importlib.import_module(module)
        except Exception:  # said where it is used
            pass
    threading.Thread(target=load, name=f"import {module}", daemon=True).start()


@dataclass
class StudyPart:
    """One study's share of a run (`run_study`'s, or a suite's): its runs left to train, how they become jobs
    (its own plan), and what its records need (folder, data)."""

    study: StudyConfig
    study_dir: Path
    data: object  # the baseline's ImageData: classes and test labels for the run folders
    todo: list
    plan: Callable[[list], list]  # runs left -> jobs, by the study's plan
    end: EndCosts = field(default_factory=EndCosts)  # what it does after its last epochs, for its time left


def prepare_study(study: StudyConfig, source: str, options: RunOptions, store: Store, device: str, slots: int,
                  stacking: dict, log) -> StudyPart:
    """Under the output lock: the study and its runs stored and made to match the study file, and its plan made
    (said in one line) for `slots` workers, the same whether it runs alone or in a suite."""
    study_dir = Path(options.out) / study.name
    remove_stale_temp_files(study_dir)
    data = load_study_data(study.variants[study.baseline_name], str(options.cache))
    report_epochs = sorted({e for v in study.variants for e in study.epochs_to_report(v)})
    store.save_study(study.name, study.model_dump(mode="json"), _study_info(study, study_dir, data, report_epochs,
                                                                             device, options), source)
    grid_seconds = _save_study_files(study_dir, data)
    fingerprints = {v: load_study_data(cfg, str(options.cache)).fingerprint for v, cfg in study.variants.items()}
    runs = sync_runs(store, study, study_dir, fingerprints, options.force, log, options.checkpoint_dir)
    wanted = (run_status.FAILED,) if options.retry_failed else run_status.TO_TRAIN
    todo = [r for r in runs if r.row.status in wanted]
    _say_what_is_left(study.name, runs, todo, options, log)
    plan = None
    if todo:
        study_plan = plan_study(runs, study, options, stacking, slots, device, report_epochs)
        print(f"{study.name}: {study_plan.describe()}", file=log)
        plan = study_plan.jobs
    return StudyPart(study, study_dir, data, todo, plan, end_costs(grid_seconds, len(study.variants)))


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


def _save_study_files(study_dir: Path, data) -> float:
    """The test labels and the sample grid written; the seconds the grid took to draw (the time left's unit for the
    figures still to come)."""
    from nnstudy.report import sample_grid

    buf = io.BytesIO()
    np.save(buf, data.test_y.numpy())
    files.write_bytes(study_dir / TEST_LABELS, buf.getvalue())
    start = time.monotonic()
    sample_grid(data.train_x, data.train_y, data.classes, study_dir / "figures" / "samples.png")
    return time.monotonic() - start


def _say_what_is_left(name: str, runs, todo, options: RunOptions, log) -> None:
    skipped = {s: sum(r.row.status == s for r in runs) for s in run_status.ENDED}
    print(f"{name}: {len(runs)} runs; {skipped['done'] + skipped['diverged']} already finished, "
          f"{len(todo)} to train" + (f", {skipped['failed']} failed (rerun them with --retry-failed)"
                                     if skipped["failed"] and not options.retry_failed else ""), file=log)


# A run whose worker died this many times (in this invocation) is failed instead of retried.
_WORKER_DEATHS_TO_FAIL = 2


def _queue_line(jobs: list, studies: int, workers: int) -> str:
    """A suite's queue in one line: its jobs, and each worker's estimated share of them."""
    _, load = first_free([j.cost for j in jobs], workers)
    ideal = sum(load) / len(load)
    return (f"one queue of {len(jobs)} job(s) from {studies} stud{'y' if studies == 1 else 'ies'}, most "
            f"expensive first, on {workers} worker(s); workers' shares {', '.join(gflop(x) for x in load)} "
            f"(longest {max(load) / ideal:.2f}x total/workers)")


def execute_parts(parts: list[StudyPart], name: str, store: Store, device: str, executor: Executor,
                  options: RunOptions, log, suite: bool = False) -> None:
    """Run the parts' jobs as one queue, most expensive first onto the first free worker; a job whose worker
    process (or node) died resumes from its checkpoints.

    Only the dead worker's job is blamed: its runs that had started get a
    strike, and a run with two strikes is failed with a message saying so
    (e.g. a model that does not fit in memory); every other job goes on.
    `name` names the whole (the study, or the suite) in messages and its time left.
    """
    left = {p.study.name: p.todo for p in parts}
    by_name = {p.study.name: p for p in parts}

    def plan(todo_by_study: dict) -> list:
        jobs = [j for n, todo in todo_by_study.items() if todo for j in by_name[n].plan(todo)]
        return sorted(jobs, key=lambda j: -j.cost)  # stable: a study's own order among equal costs

    jobs = plan(left)
    if suite:
        print(f"{name}: {_queue_line(jobs, len(parts), executor.slots())}", file=log, flush=True)
    parallel = executor.parallel(len(jobs))  # jobs at once, for the time left
    executor = executor.for_jobs(len(jobs))  # chosen once: retries after a worker died stay in (fresh) workers
    for note in executor.notes(options):
        print(f"{name}: {note}", file=log)
    deaths: dict[int, int] = {}
    idle_deaths = 0  # deaths with no run started: workers that die on start-up would loop forever
    runs = {n: {r.id: r for r in todo} for n, todo in left.items()}
    while jobs:
        clock = StudyClock(1 if executor.step_bars else parallel, run_end=max(p.end.run for p in parts),
                           study_end=sum(p.end.study for p in parts))
        recorders = {n: Recorder(store, list(runs[n].values()), by_name[n].data.classes,
                                 by_name[n].data.test_y.numpy(), log, epoch_lines=None if options.progress else False,
                                 clock=clock, suite=name if suite else None) for n in runs}
        _execute_once(executor, jobs, recorders, name, device, options, log, parallel)
        lost = [item for r in recorders.values() for item in r.lost]
        if not lost:
            return
        idle_deaths = 0 if any(started for _, started in lost) else idle_deaths + 1
        if idle_deaths >= _WORKER_DEATHS_TO_FAIL:
            raise UserError("worker processes die before they start any run; run with --executor local "
                            "to see why, or check free memory")
        retry = {}
        for n, recorder in recorders.items():
            if recorder.lost:
                remove_stale_temp_files(by_name[n].study_dir)  # the dead worker's cut-short writes
                retry[n] = _strike(recorder.lost, runs[n], deaths, store, executor.lost, log)
                runs[n].update({r.id: r for r in retry[n]})
        if any(retry.values()):
            print(f"{name}: a {executor.lost} died; {sum(map(len, retry.values()))} unfinished run(s) of its job "
                  "continue from their last checkpoint", file=log)
        jobs = plan(retry)


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


def _execute_once(executor: Executor, jobs, recorders: dict, name: str, device: str, options: RunOptions,
                  log, parallel: int) -> None:
    for job in jobs:  # in queue order, so that the time left places the jobs to come as the pool will
        recorders[job.study].plan([job])
    print(f"{name}: training {len(jobs)} job(s) on {device} with {executor.describe()}"
          + (f", most expensive first: {'; '.join(_label(j, recorders) for j in jobs)}" if len(jobs) > 1
             else f": {_label(jobs[0], recorders)}"), file=log)
    overall = None
    if options.progress and not executor.step_bars and bars_shown():  # a terminal, or a widget in Jupyter
        total = sum(len(j.seeds) * j.config["train"]["epochs"] for j in jobs)
        # Below the workers' own bars.
        overall = progress_bar(total=total, desc=f"{name} epochs", unit="epoch", position=parallel, leave=False)

    def handle(job, event) -> None:
        recorders[job.study].handle(job, event)
        if overall is not None and isinstance(event, EpochsDone) and not event.restored:
            overall.update(len(job.seeds))

    try:
        executor.run(jobs, handle)
    finally:
        if overall is not None:
            overall.close()


def _label(job, recorders: dict) -> str:
    return f"{job.study} {job.label}" if len(recorders) > 1 else job.label
