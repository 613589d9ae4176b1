"""Run a study: plan every (variant, seed) run, skip what is done, train the rest, report.

The plan is idempotent: a run's identity is the hash of its resolved config,
seed and dataset fingerprint, so running a study again only trains what is
missing or changed, and resumes interrupted runs from their last checkpoint.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nnstudy.config import StudyConfig, config_hash
from nnstudy.errors import UserError
from nnstudy.executors import Job, check_executor_options, default_workers, make_executor
from nnstudy.executors.events import EpochsDone
from nnstudy.executors.job import load_study_data
from nnstudy.recorder import Recorder
from nnstudy.store import Store, load_results
from nnstudy.store import files
from nnstudy.store.load import TEST_LABELS
from nnstudy.training.checkpoint import (align_checkpoints, checkpoint_folder, checkpoint_identity, has_checkpoint,
                                        remove_checkpoints, remove_temp_files)
from nnstudy.training.threads import default_cpu_threads
from nnstudy.training.preflight import check_variant
from nnstudy.training.progress import bars_shown, progress_bar
from nnstudy.training.trainer import stack_key


@dataclass
class RunOptions:
    out: Path = Path("nnstudy-out")
    device: str | None = None  # None: CUDA when available, else CPU
    executor: str = "auto"  # auto | local | process | ray
    workers: int | None = None
    vectorize: bool = True
    compile: bool = False
    force: bool = False
    retry_failed: bool = False
    cache_dir: Path | None = None
    ray_address: str | None = None  # implies executor ray
    cpus_per_job: float | None = None  # Ray: CPUs each job asks for, and its torch threads; None: 1
    gpus_per_job: float | None = None  # Ray: GPUs each job asks for (fractions share one); None: 1 on cuda, else 0
    checkpoint_dir: str | None = None  # None: each run's folder; else a folder or URI that every node reaches
    stack_variants: bool = True  # variants that differ only in values (init, loss) train as one stack
    share_cores: bool = False  # process pool: running jobs take the cores of finished ones (last-bit CPU differences)
    progress: bool = True
    probes: bool = True  # mechanism probes per epoch (training/probes.py); they never change the numbers
    log: object = field(default=None, repr=False)  # None: sys.stderr at run time (not at import)


def resolve_device(name: str | None) -> str:
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu (or leave --device out)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: choose cpu or cuda")
    return name


def default_cache_dir() -> Path:
    return Path(os.environ.get("NNSTUDY_CACHE") or Path.home() / ".cache" / "nnstudy")


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
    from nnstudy.report import build_report, sample_grid

    out = Path(options.out)
    device = resolve_device(options.device)
    cache_dir = Path(options.cache_dir or default_cache_dir())
    study_dir = out / study.name
    log = options.log or sys.stderr
    ray = _reach_ray(options, device)  # before anything is written: a bad address leaves the output folder as it was
    stacking = _preflight(study, cache_dir, options, log)  # before anything is written
    with output_lock(out):
        store = Store(out)
        _remove_stale_temp_files(study_dir)
        base = study.variants[study.baseline_name]
        data = load_study_data(base, str(cache_dir))
        report_epochs = sorted({e for v in study.variants for e in study.epochs_to_report(v)})
        info = {
            "study_dir": str(study_dir.resolve()), "baseline": study.baseline_name, "report_epochs": report_epochs,
            "classes": data.classes,
            "dataset": {"name": base.dataset.name, "n_train": int(data.train_x.shape[0]), "n_test": int(data.test_x.shape[0]),
                        "image_shape": list(data.train_x.shape[1:]), "fingerprint": data.fingerprint, "source": data.source,
                        "split_note": "The train/test split is fixed: every variant and seed sees the same images; seeds change "
                                      "initialisation, data order and augmentation only."},
            "settings": {"device": device, "vectorized": options.vectorize, "compile": options.compile,
                         "precision": ", ".join(sorted({v.train.precision for v in study.variants.values()}))},
        }
        store.save_study(study.name, study.model_dump(mode="json"), info, source)
        _save_study_files(study_dir, data, sample_grid)

        rows = _plan(store, study, study_dir, cache_dir, options.force, log, options.checkpoint_dir)
        wanted = ("failed",) if options.retry_failed else ("pending", "running")
        todo = [r for r in rows if r.status in wanted]
        skipped = {s: sum(r.status == s for r in rows) for s in ("done", "diverged", "failed")}
        print(f"{study.name}: {len(rows)} runs; {skipped['done'] + skipped['diverged']} already finished, "
              f"{len(todo)} to train" + (f", {skipped['failed']} failed (rerun them with --retry-failed)"
                                         if skipped["failed"] and not options.retry_failed else ""), file=log)
        plan = lambda runs: _jobs(runs, rows, study, report_epochs, cache_dir, device, options, stacking)
        if todo:
            _execute(todo, plan, store, study_dir, data, device, options, log, ray)
        results = load_results(store, study.name)
        paths = build_report(results)
        store.close()
    return results, paths


def _reach_ray(options: RunOptions, device: str):
    """The Ray executor, joined to its cluster (or a local Ray started); None for the other executors.

    The process pool and this process need nothing until the jobs are known; the
    options meant for Ray alone are refused here, also before anything is written.
    """
    kind = "ray" if options.executor == "auto" and options.ray_address else options.executor
    if kind != "ray":
        check_executor_options(kind, options.ray_address, options.cpus_per_job, options.gpus_per_job)
        return None
    return make_executor("ray", 1, options.ray_address, device, options.cpus_per_job, options.gpus_per_job)


def _remove_stale_temp_files(study_dir: Path) -> None:
    """Temp files of writes cut short by a crash. Only while we hold the lock and no worker runs."""
    for stale in study_dir.rglob(".*.tmp") if study_dir.is_dir() else ():
        stale.unlink(missing_ok=True)


def _save_study_files(study_dir: Path, data, sample_grid) -> None:
    buf = io.BytesIO()
    np.save(buf, data.test_y.numpy())
    files.write_bytes(study_dir / TEST_LABELS, buf.getvalue())
    sample_grid(data.train_x, data.train_y, data.classes, study_dir / "figures" / "samples.png")


def _plan(store: Store, study: StudyConfig, study_dir: Path, cache_dir: Path, force: bool, log,
          checkpoint_root: str | None = None):
    """Make the store's runs match the study file and what the run folders hold.

    A run folder is resumed (or restored, when it holds the final checkpoint)
    only when its checkpoint carries this run's identity; a finished run whose
    record is incomplete is reopened, so that done always means "has its metrics".
    """
    rows = []
    for vname, cfg in study.variants.items():
        data = load_study_data(cfg, str(cache_dir))
        for seed in study.seeds:
            run_dir = study_dir / "runs" / vname / f"seed-{seed}"
            identity = config_hash(cfg, seed, data.fingerprint)
            row, reset = store.sync_run(study.name, vname, seed, cfg.model_dump(mode="json"), identity,
                                        data.fingerprint, run_dir, force)
            where = f"{study.name}: {vname} seed {seed}"
            ckpt = run_checkpoint_dir(checkpoint_root, study.name, row)
            held = functools.cache(lambda ckpt=ckpt: checkpoint_identity(ckpt))  # read once (a download on a store)
            if (run_dir.exists() or has_checkpoint(ckpt)) and (reset or (row.status not in ("done", "diverged")
                                                                   and held() != identity)):
                if run_dir.exists():  # results of another config (or of --force): never resumed
                    shutil.rmtree(run_dir)
                remove_checkpoints(ckpt)
                if not reset:
                    print(f"{where}: its run folder held another config's results; retraining from scratch", file=log)
            elif row.status in ("done", "diverged") and not _complete(store, row):
                print(f"{where}: marked {row.status} but its record is incomplete; "
                      + ("restoring it from its checkpoint" if held() == identity
                         else "retraining it"), file=log)
                store.reopen_run(row.id)
                row = store.run(study.name, vname, seed)
            elif row.status == "pending" and held() == identity:
                print(f"{where}: not in the store, but its run folder holds its checkpoint; resuming from there",
                      file=log)
            rows.append(row)
    dropped = store.drop_runs_except(study.name, {(v, s) for v in study.variants for s in study.seeds})
    if dropped:
        print(f"{study.name}: {dropped} stored runs are no longer in the study and were dropped from it", file=log)
    return rows


def run_checkpoint_dir(root: str | None, study: str, row) -> str:
    """A run's checkpoint folder: its run folder, or ROOT/<study>/<variant>/seed-<k> with --checkpoint-dir ROOT."""
    return str(row.run_dir) if root is None else checkpoint_folder(root, study, row.variant, f"seed-{row.seed}")


def _complete(store: Store, row) -> bool:
    """A finished run has every epoch's metrics in the store and its files in its folder."""
    n = store.epoch_count(row.id)
    files_there = (row.run_dir / "metrics.json").exists() and (
        row.status == "diverged" or (row.run_dir / "predictions.npy").exists())
    return n > 0 and n == row.epochs_done and files_there


def _preflight(study: StudyConfig, cache_dir: Path, options: RunOptions, log) -> dict:
    """Check every variant on one batch before anything trains; say once which cannot stack its seeds."""
    stacking, step_seconds = {}, {}
    for name, cfg in study.variants.items():
        result = check_variant(name, cfg, load_study_data(cfg, str(cache_dir)),
                               stack=options.vectorize and len(study.seeds) > 1)
        # One architecture, one step cost: timing noise must not reorder variants that cost the same.
        same = json.dumps([cfg.model.model_dump(mode="json", exclude={"init", "init_value"}), cfg.train.batch_size])
        result.step_seconds = step_seconds.setdefault(same, result.step_seconds)
        stacking[name] = result
        if not result.stackable:
            print(f"{study.name}: variant {name}: {result.why_not}", file=log)
    return stacking


def _jobs(todo, study_runs, study: StudyConfig, report_epochs, cache_dir: Path, device: str, options: RunOptions,
          stacking: dict):
    """Group the runs that stand at the same epoch into stacked jobs, most expensive first.

    A stack holds the seeds of one variant, and with `stack_variants` the runs of
    every variant that differs from it only in values (initialisation, activation, pooling, loss, optimiser
    settings: training/trainer.py VALUE_KEYS) and has weights of the same shapes. The order is by estimated cost (one step's
    measured time x steps left x runs), so the longest job never starts last.
    """
    groups: dict[tuple, list] = {}
    epochs: dict[str, int] = {}
    ckpt = {r.id: run_checkpoint_dir(options.checkpoint_dir, study.name, r) for r in todo}
    for folder in ckpt.values():
        remove_temp_files(folder)  # of writes cut short by a dead worker or node; no job runs now
    stacks = {v: options.vectorize and stacking[v].stackable for v in study.variants}
    together = {v: stack_key(cfg) + stacking[v].structure if options.stack_variants else v
                for v, cfg in study.variants.items()}
    stack_of = _stacks(study_runs, together, stacks, _cpu_slots(device, options))
    for group in {stack_of[r.id] for r in todo if stacks[r.variant]}:
        epochs.update(align_checkpoints([ckpt[r.id] for r in todo if stacks[r.variant] and stack_of[r.id] == group]))
    for row in todo:
        stack = stacks[row.variant]
        key = (stack_of[row.id], epochs[ckpt[row.id]]) if stack else (row.variant, row.seed)
        groups.setdefault(key, []).append(row)
    jobs = []
    for (_, start), rows in groups.items():
        variants = list(dict.fromkeys(r.variant for r in rows))
        lead = study.variants[variants[0]]
        jobs.append(Job(
            study=study.name, variant="+".join(variants), config=lead.model_dump(mode="json"),
            run_ids=[r.id for r in rows], seeds=[r.seed for r in rows], identities=[r.config_hash for r in rows],
            checkpoint_dirs=[ckpt[r.id] for r in rows], report_epochs=report_epochs, cache_dir=str(cache_dir),
            device=device, vectorize=stacks[variants[0]], compile=options.compile, progress=options.progress,
            stack_note=stacking[variants[0]].why_not or "", probes=options.probes,
            member_configs=[study.variants[r.variant].model_dump(mode="json") for r in rows] if len(variants) > 1 else [],
            member_variants=[r.variant for r in rows] if len(variants) > 1 else [],
        ))
        steps = -(-load_study_data(lead, str(cache_dir)).train_x.shape[0] // lead.train.batch_size)
        left = lead.train.epochs - (start if isinstance(start, int) and stacks[variants[0]] else 0)
        jobs[-1].cost = max(stacking[v].step_seconds for v in variants) * steps * left * len(rows)
    return sorted(jobs, key=lambda j: -j.cost)


def _cpu_slots(device: str, options: RunOptions) -> int:
    """Worker processes a process pool would run on this CPU (Ray and a GPU place jobs themselves)."""
    if device != "cpu" or options.executor in ("local", "ray") or options.ray_address:
        return 1
    return options.workers or os.cpu_count() or 1


def _stacks(study_runs, together: dict, stacks: dict, slots: int) -> dict:
    """run id -> its stack: runs whose variants share a stack key, split so that no worker idles.

    With fewer stacks than workers, the stack with the most runs is split in two, every
    other run to each half (so each gets its share of every variant's cost), while both
    halves keep two runs or more. Decided over all the study's runs, never by timing
    or by what is left to train, so a run trains in the same stack when the study is
    resumed, retried or run again: its numbers do not change.
    """
    pieces: dict[str, list] = {}
    for r in study_runs:
        if stacks[r.variant]:
            pieces.setdefault(together[r.variant], []).append(r.id)
    pieces = list(pieces.values())
    alone = sum(not stacks[r.variant] for r in study_runs)
    while len(pieces) + alone < slots:
        big = max(pieces, key=len, default=[])
        if len(big) < 4:
            break
        i = pieces.index(big)
        pieces[i:i + 1] = [big[0::2], big[1::2]]
    return {run_id: i for i, piece in enumerate(pieces) for run_id in piece}


# A run whose worker died this many times (in this invocation) is failed instead of retried.
_WORKER_DEATHS_TO_FAIL = 2


def _execute(todo, plan, store: Store, study_dir: Path, data, device: str, options: RunOptions, log,
             ray=None) -> None:
    """Run the jobs; a job whose worker process (or node) died resumes from its checkpoints.

    Only the dead worker's job is blamed: its runs that had started get a
    strike, and a run with two strikes is failed with a message saying so
    (e.g. a model that does not fit in memory); every other job goes on.
    """
    jobs = plan(todo)
    workers = options.workers or default_workers(len(jobs), device)
    kind = "ray" if ray is not None else options.executor
    if kind == "auto":
        kind = "process" if workers > 1 else "local"
    # Chosen once: retries after a worker died stay in (fresh) worker processes.
    executor = ray or make_executor(kind, workers, None, device, share_cores=options.share_cores)
    if kind == "ray" and options.checkpoint_dir is None and executor.nodes > 1:
        print(f"{study_dir.name}: checkpoints go to the run folders under {Path(options.out).resolve()} on whichever "
              "node trains a job; unless every node shares that folder, give --checkpoint-dir (a shared folder or "
              "s3://bucket/prefix) so that a job resumes on another node", file=log)
    lost = "Ray worker or its node" if kind == "ray" else "worker process"
    name = study_dir.name
    deaths: dict[int, int] = {}
    idle_deaths = 0  # deaths with no run started: workers that die on start-up would loop forever
    rows = {r.id: r for r in todo}
    while jobs:
        parallel = 1 if executor.name == "local" else workers  # jobs at once, for the time left
        recorder = Recorder(store, rows.values(), data.classes, data.test_y.numpy(), log, parallel,
                            epoch_lines=None if options.progress else False)
        _execute_once(executor, workers, jobs, recorder, name, device, options, log)
        if not recorder.lost:
            return
        idle_deaths = 0 if any(started for _, started in recorder.lost) else idle_deaths + 1
        if idle_deaths >= _WORKER_DEATHS_TO_FAIL:
            raise UserError("worker processes die before they start any run; run with --executor local "
                            "to see why, or check free memory")
        _remove_stale_temp_files(study_dir)  # the dead worker's cut-short writes
        retry = []
        for job, started in recorder.lost:
            for rid in job.run_ids:
                if started:
                    deaths[rid] = deaths.get(rid, 0) + 1
                row = rows[rid]
                if deaths.get(rid, 0) >= _WORKER_DEATHS_TO_FAIL:
                    store.fail_run(rid, f"its {lost} died twice while training it (killed by the operating "
                                        "system, often for running out of memory, or a crash in native code); rerun "
                                        "with --retry-failed, with fewer --workers if memory is short", "")
                    print(f"  {row.variant} seed {row.seed}: failed (its {lost} died twice)", file=log)
                else:
                    retry.append(store.run(name, row.variant, row.seed))
        if retry:
            print(f"{name}: a {lost} died; {len(retry)} unfinished run(s) of its job continue from their "
                  "last checkpoint", file=log)
        jobs = plan(retry)
        rows.update({r.id: r for r in retry})


def worker_threads(job: Job, workers: int) -> int:
    """Threads for a job in a pool of `workers` processes: the small-step rule, within its share of the cores."""
    share = max(1, (os.cpu_count() or 1) // workers)
    return default_cpu_threads(job.config["train"]["batch_size"] * len(job.seeds), cores=share)


def _execute_once(executor, workers: int, jobs: list[Job], recorder: Recorder, name: str, device: str,
                  options: RunOptions, log) -> None:
    if executor.name == "process":
        for job in jobs:
            job.threads = worker_threads(job, workers)
    recorder.plan(jobs)
    print(f"{name}: training {len(jobs)} job(s) on {device} with the {executor.name} executor"
          + (f" ({workers} workers)" if executor.name == "process" else "")
          + (f", most expensive first: {'; '.join(j.label for j in jobs)}" if len(jobs) > 1 else f": {jobs[0].label}"),
          file=log)
    overall = None
    if options.progress and executor.name != "local" and bars_shown():  # a terminal, or a widget in Jupyter
        total = sum(len(j.seeds) * j.config["train"]["epochs"] for j in jobs)
        overall = progress_bar(total=total, desc=f"{name} epochs", unit="epoch", position=workers, leave=False)

    def handle(job: Job, event) -> None:
        recorder.handle(job, event)
        if overall is not None and isinstance(event, EpochsDone) and not event.restored:
            overall.update(len(job.seeds))

    try:
        executor.run(jobs, handle)
    finally:
        if overall is not None:
            overall.close()
