"""Executors run a list of jobs; they differ only in where the work happens.

- `LocalExecutor`: in this process, one job after another (per-step progress bars).
- `ProcessExecutor`: a pool of worker processes, each with its share of the CPU threads.
- `RayExecutor` (executors/ray.py): tasks on a Ray cluster.
Each calls `on_done(JobResult)` as jobs finish.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from nnstudy.executors.job import Job, JobResult, execute_job


class WorkerDied(Exception):
    """A worker process died without reporting (killed by the OS, e.g. out of memory, or a crash
    in native code). The pool is gone with it; the runner decides what to retry."""


class LocalExecutor:
    name = "local"

    def run(self, jobs: list[Job], on_done: Callable[[JobResult], None], tick: Callable[[], None] = lambda: None) -> None:
        for job in jobs:
            on_done(execute_job(job))
            tick()


def _worker_init(parent: int | None = None) -> None:
    # Die with the parent (Linux), so a killed study leaves no orphan writing to the store.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:  # the parent died while we started: PDEATHSIG came too late
        os._exit(1)
    # Ctrl-C is handled once, by the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor:
    """Jobs spread over `workers` processes ('spawn': safe with torch's threads)."""

    name = "process"

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, jobs: list[Job], on_done: Callable[[JobResult], None], tick: Callable[[], None] = lambda: None) -> None:
        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        try:
            pending = set()
            for i, job in enumerate(jobs):
                job.position = i % self.workers
                pending.add(pool.submit(execute_job, job))
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        result = fut.result()
                    except BrokenProcessPool as exc:  # the pool stops every worker when one dies
                        raise WorkerDied(str(exc)) from None
                    on_done(result)
                tick()
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def default_workers(n_jobs: int, device: str) -> int:
    """One worker per core on CPU (each single-threaded); on a GPU, one process."""
    if device != "cpu":
        return 1
    return max(1, min(n_jobs, os.cpu_count() or 1))
