"""Pool workers forked from the warm server (executors/warm.py): libraries already loaded, but the driver's nnstudy,
environment and pid, as a spawned worker has them."""

from __future__ import annotations

import os
import sys

import pytest

from nnstudy.executors.warm import PRELOAD, pool_ahead, worker_context


@pytest.mark.parametrize("executor, workers, ray, device, ahead", [
    ("auto", 2, None, None, True),
    ("process", 2, None, "cpu", True),
    ("auto", 1, None, None, False),  # one worker trains in the driver
    ("local", 2, None, None, False),
    ("ray", 2, None, None, False),
    ("auto", 2, "ray://head:10001", None, False),  # an address means Ray
    ("process", 2, None, "cuda", False),  # a GPU trains in one process
])
def test_the_server_starts_only_for_a_pool_of_two_or_more(executor, workers, ray, device, ahead):
    assert pool_ahead(executor, workers, ray, device) is ahead


def _report(conn, driver: int, environ: dict) -> None:
    from nnstudy.executors.local import _worker_init

    preloaded = [m for m in PRELOAD if m in sys.modules]  # before this process imported anything itself
    _worker_init(driver, environ)
    import nnstudy
    from nnstudy.files import DRIVER_PID

    conn.send((preloaded, os.environ.get("NNSTUDY_SET_LATE"), nnstudy.__file__, os.getppid() != driver,
               os.environ.get(DRIVER_PID)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork from a server on Linux only")
def test_a_forked_worker_has_the_libraries_and_the_drivers_nnstudy_environment_and_pid(monkeypatch):
    import nnstudy
    from multiprocessing import forkserver

    from nnstudy.files import DRIVER_PID

    ctx = worker_context()
    assert ctx.get_start_method() == "forkserver"
    forkserver.ensure_running()
    monkeypatch.setenv("NNSTUDY_SET_LATE", "yes")  # after the server started: it does not have it
    parent, child = ctx.Pipe()
    environ = {**os.environ, DRIVER_PID: str(os.getpid())}
    proc = ctx.Process(target=_report, args=(child, os.getpid(), environ))
    proc.start()
    preloaded, late, where, forked_by_server, driver = parent.recv()
    proc.join(60)
    assert proc.exitcode == 0
    assert preloaded == list(PRELOAD)
    assert late == "yes"
    assert where == nnstudy.__file__
    assert forked_by_server and driver == str(os.getpid())  # NNSTUDY_CRASH_PARENT kills the driver, not the server
