"""What the tests share as fixtures: the CLI runner and the machine tag (helpers and study files: tests/studies.py).

Tests marked `slow` kill processes, start clusters, servers or browsers, or simulate thousands of
studies; `pytest -m "not slow"` is the edit-test loop, the README's command runs them all.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

# Before torch loads OpenMP: a thread waiting for work sleeps instead of spinning. The README's command runs one
# test process per core, and each trains on every core (training/threads.py), so a spinning thread burns a core
# another test needs: a 2-seed digits epoch cost 0.65 CPU s spinning and 0.04 sleeping on a busy 2-core machine.
# Same threads, same numbers; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from studies import run_cli


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """With `--dist loadgroup`, the tests of one `xdist_group` go to one worker: their node ids end in "@group".

    pytest-xdist 3.8 writes that suffix to `item._nodeid`, which pytest 9 no longer reads (a node's id is its
    `_id`), so nothing was grouped and every module fixture was built on every worker. This gives the id the
    suffix where pytest 9 reads it; with a pytest that honours xdist's own suffix, the ids already end in it.
    """
    if not getattr(config.option, "loadgroup", False):  # set on each pytest-xdist worker under --dist loadgroup
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before 9: xdist's suffix works there
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and item.nodeid.rfind("@") <= item.nodeid.rfind("]") and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture
def cli():
    """`cli(*argv)`: `run_cli` as a fixture, for tests that take their helpers as arguments."""
    return run_cli


@pytest.fixture
def one_thread():
    """As a process-pool job trains on CPU (one worker a core); more threads split work by the stack's size."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cpu_info() -> tuple[str, str]:
    """The CPU's model name and a digest of its feature flags (Linux; the platform's name elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = " ".join(sorted(fields.get("flags", "").split()))
    return fields.get("model name", platform.machine()), hashlib.sha256(flags.encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def machine() -> dict:
    """What decides a CPU run's last bits: the CPU model and its flags, torch and its kernel level, threads.

    torch's capability level alone ("AVX512") is shared by an Intel Xeon and an AMD EPYC whose
    kernels round differently (a probe's gradient norm: 0.2329511195 on one, 0.2329511046 on the other).
    """
    model, flags = _cpu_info()
    return {"cpu_model": model, "cpu_flags": flags, "cpu": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
