"""Pool workers that start warm: forked from a fork server that has already imported the libraries a job needs.

A worker spawned as a fresh interpreter imports torch, torch._dynamo (which
torch's optimizers import on their first step) and matplotlib (its runs'
figures) before its first epoch: seconds of CPU in every worker, and they
began only once the driver had planned. Here one fork server imports them
once, started as `nnstudy run` begins, so it loads them on the core the
driver leaves idle while it reads the study, checks it and draws its
sample grid; each worker is then a fork of it that imports only nnstudy.

The server preloads libraries only, never nnstudy: a fork gets the driver's
sys.path and working folder before it imports anything of nnstudy, so a
worker always runs the driver's nnstudy (a source checkout on PYTHONPATH or
an installed one), as a spawned worker does. This module imports neither
torch nor the rest of nnstudy, so the CLI can start the server before it
does.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import sys

# What a job imports before its first epoch besides nnstudy itself: torch._dynamo comes with the optimizers' first step.
PRELOAD = ("torch", "torch._dynamo", "matplotlib.figure")


def worker_context():
    """The multiprocessing context pool workers start from: forks of the warm server on Linux; elsewhere fresh
    interpreters ('spawn': on macOS a fork of a process that has loaded Apple's frameworks is not safe)."""
    if not sys.platform.startswith("linux") or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def pool_ahead(executor: str, workers: int | None, ray_address: str | None, device: str | None) -> bool:
    """Whether a run with these options will train in a local process pool of two workers or more (as far as can
    be told before the study is read: a study of one job trains in the driver, and then the server idles)."""
    if executor not in ("auto", "process") or (executor == "auto" and ray_address):
        return False
    if device not in (None, "auto", "cpu"):  # a GPU trains in one process
        return False
    return (workers or os.cpu_count() or 1) >= 2


def start_warming(executor: str = "auto", workers: int | None = None, ray_address: str | None = None,
                  device: str | None = None) -> None:
    """Start the fork server now, if the run will use a process pool and workers fork from it; it loads the
    libraries while this process goes on, and lives until this process exits (later runs reuse it)."""
    ctx = worker_context()
    if ctx.get_start_method() == "forkserver" and pool_ahead(executor, workers, ray_address, device):
        from multiprocessing import forkserver

        forkserver.ensure_running()
        atexit.unregister(_stop_server)  # registered once
        atexit.register(_stop_server)


def _stop_server() -> None:
    """At this process's exit: end the server at once. Left to itself it would exit a moment later and spend about
    a second of CPU tearing down torch's objects, holding this process's stdout open all the while (a pipe
    reading `nnstudy run`'s output, as bench/fixed_costs.py does, would wait for it)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # the server of this process, if it started one
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
