"""The executors on this machine: `local` (this process, one job after another, per-step progress bars) and
`process` (worker processes, each with its share of the CPU threads). `ray` is in executors/ray.py."""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Callable

from nnstudy.executors import Executor
from nnstudy.executors.events import Event, JobEnded, WorkerLost
from nnstudy.executors.job import Job, execute_job
from nnstudy.executors.warm import start_warming, worker_context
from nnstudy.files import DRIVER_PID
from nnstudy.registry import EXECUTORS
from nnstudy.training.threads import default_cpu_threads

Handler = Callable[[Job, Event], None]


class LocalExecutor(Executor):
    name = "local"
    step_bars = True

    def run(self, jobs: list[Job], handle: Handler) -> None:
        for job in jobs:
            execute_job(job, lambda event: handle(job, event))
            handle(job, JobEnded())


@EXECUTORS.register("local")
def _open_local(options, device: str) -> LocalExecutor:
    return LocalExecutor()


def _worker_init(driver: int | None = None, environ: dict | None = None) -> None:
    # Die with the parent (Linux), so a killed study leaves no orphan training on. A worker forked by the warm
    # server (executors/warm.py) has that server as its parent, and the server exits when the driver does.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if driver is not None and not _alive(driver):  # the driver died while we started: PDEATHSIG came too late
        os._exit(1)
    if environ is not None:  # the driver's environment now (the warm server's is from when it started)
        os.environ.clear()
        os.environ.update(environ)
    # Ctrl-C is handled once, by the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _alive(pid: int) -> bool:
    """Whether the driver `pid` still runs: the parent of a spawned worker, else found by a signal-0 probe."""
    if os.getppid() == pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds the pid
        return True
    return True


def _worker_main(conn, driver: int, environ: dict | None = None) -> None:
    """A worker process: run the jobs it is sent, streaming their events back; None ends it.

    Between epochs a job takes the thread count the driver last sent (cores freed by finished jobs).
    """
    _worker_init(driver, environ)

    def threads() -> int | None:
        latest = None
        while conn.poll():
            latest = conn.recv()[1]  # ("threads", n)
        return latest

    while (job := conn.recv()) is not None:
        if isinstance(job, tuple):  # a thread count that arrived after its job ended
            continue
        execute_job(job, conn.send, threads=threads)
        conn.send(JobEnded())


@contextmanager
def _caller_script_hidden():
    """Start workers without the caller's script: they need only nnstudy and the job.

    'spawn' re-imports the parent's __main__ in every worker; a user's script
    without an `if __name__ == "__main__":` guard (the README's API example,
    pasted into a file) would run its whole study again in each of them.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        environ = {**os.environ, DRIVER_PID: str(os.getpid())}
        self.process = ctx.Process(target=_worker_main, args=(child, os.getpid(), environ), daemon=True)
        with _caller_script_hidden():
            self.process.start()
        child.close()
        self.job: Job | None = None
        self.threads = 0

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.process.join(timeout=None if not kill else 5)
        self.conn.close()


class ProcessExecutor(Executor):
    """Jobs spread over `workers` processes, forked from a server that has imported torch but never used it, or
    spawned (executors/warm.py): either is safe with torch's threads, which a plain fork of the driver is not.

    Each worker holds one job at a time, so when the operating system kills one
    (out of memory, a crash in native code) exactly that job is lost; the
    others go on, and a fresh worker takes the next job.
    """

    name = "process"

    def __init__(self, workers: int | None, share_cores: bool = False, device: str = "cpu"):
        self.workers, self.share_cores, self.device = workers, share_cores, device  # workers None: one per job

    def slots(self) -> int:
        # A GPU places its jobs itself: one stack is not split for it.
        return 1 if self.device != "cpu" else self.workers or os.cpu_count() or 1

    def for_jobs(self, n_jobs: int) -> Executor:
        workers = self.workers or default_workers(n_jobs, self.device)
        return LocalExecutor() if workers <= 1 else ProcessExecutor(workers, self.share_cores, self.device)

    def parallel(self, n_jobs: int) -> int:
        return self.workers or default_workers(n_jobs, self.device)

    def describe(self) -> str:
        return f"the process executor ({self.workers} workers)"

    def run(self, jobs: list[Job], handle: Handler) -> None:
        for job in jobs:
            job.threads = worker_threads(job, self.workers)
        ctx = worker_context()
        queue, pool = list(jobs), []
        try:
            for _ in range(min(self.workers, len(jobs))):  # in the try: a Ctrl-C here stops those started already
                pool.append(_Worker(ctx))
            while queue or any(w.job for w in pool):
                for i, w in enumerate(pool):
                    if w.job is None and queue:
                        w.job = queue.pop(0)
                        w.job.position = i
                        w.threads = w.job.threads
                        w.conn.send(w.job)
                if not queue and self.share_cores:
                    self._share_cores([w for w in pool if w.job])
                busy = [w for w in pool if w.job]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for i, w in enumerate(pool):
                    if w.job is not None and not self._drain(w, handle):
                        job, w.job = w.job, None
                        code = w.process.exitcode
                        w.stop(kill=True)
                        handle(job, WorkerLost(f"worker process exited with {_exit_text(code)}"))
                        pool[i] = _Worker(ctx) if queue else w
        except BaseException:
            for w in pool:
                w.stop(kill=True)
            raise
        for w in pool:
            w.stop()

    @staticmethod
    def _share_cores(busy: list[_Worker]) -> None:
        """No idle core while work remains: the jobs still running split the cores between them.

        The small-step rule still holds (one thread below SMALL_STEP_IMAGES a step).
        """
        cores = os.cpu_count() or 1
        for i, w in enumerate(busy):
            share = cores // len(busy) + (i < cores % len(busy))
            images = w.job.config["train"]["batch_size"] * len(w.job.seeds)
            threads = default_cpu_threads(images, cores=share)
            if threads != w.threads:
                try:
                    w.conn.send(("threads", threads))
                except OSError:  # it just died: the loop below finds out
                    continue
                w.threads = threads

    @staticmethod
    def _drain(w: _Worker, handle: Handler) -> bool:
        """Hand over what the worker has sent; False when it died with its job unfinished."""
        try:
            while w.conn.poll():
                event = w.conn.recv()
                job = w.job
                if isinstance(event, JobEnded):
                    w.job = None
                handle(job, event)
                if w.job is None:
                    return True
        except (EOFError, OSError, pickle.UnpicklingError):
            return False
        return w.process.is_alive()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def default_workers(n_jobs: int, device: str) -> int:
    """One worker per core on CPU (each single-threaded); on a GPU, one process."""
    if device != "cpu":
        return 1
    return max(1, min(n_jobs, os.cpu_count() or 1))


def worker_threads(job: Job, workers: int) -> int:
    """Threads for a job in a pool of `workers` processes: the small-step rule, within its share of the cores."""
    share = max(1, (os.cpu_count() or 1) // workers)
    return default_cpu_threads(job.config["train"]["batch_size"] * len(job.seeds), cores=share)


@EXECUTORS.register("process")
def _open_process(options, device: str) -> ProcessExecutor:
    start_warming("process", options.workers, None, device)  # the CLI started it already; the API starts it here
    return ProcessExecutor(options.workers, options.share_cores, device)
