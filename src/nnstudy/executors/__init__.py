"""Where jobs run: in this process, in worker processes, or on a Ray cluster; one registry (registry.EXECUTORS).

An entry is `open(options, device) -> Executor`, called before anything is
written (so a cluster that cannot be reached leaves the output folder as it
was); its `options` meta names the run options meant for it alone, which every
other executor refuses. A new executor is one registration:

    @EXECUTORS.register("inline")
    def _open(options, device):
        return MyExecutor()          # an Executor: run(jobs, handle)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnstudy.errors import UserError
from nnstudy.registry import EXECUTORS

if TYPE_CHECKING:
    from nnstudy.executors.job import Job

__all__ = ["Executor", "Job", "execute_job", "open_executor"]


def __getattr__(name: str):
    """`Job` and `execute_job` load torch: imported when first asked for, so that the CLI can reach
    executors/warm.py (the process pool's fork server) before torch is loaded."""
    if name in ("Job", "execute_job"):
        from nnstudy.executors import job

        return getattr(job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Executor:
    """Runs a list of jobs: passes every event of a job to `handle(job, event)` in this process and ends each job
    with `JobEnded`, or with `WorkerLost` when whatever ran it died without a word."""

    name = ""
    lost = "worker process"  # what died with a lost job, in messages
    step_bars = False  # True: jobs train in this process and draw per-step bars (else one bar for the study)

    def slots(self) -> int:
        """Jobs training at once on this machine's cores: the planner splits stacks until none idles."""
        return 1

    def for_jobs(self, n_jobs: int) -> "Executor":
        """The executor for this many jobs (a pool of one worker is this process)."""
        return self

    def parallel(self, n_jobs: int) -> int:
        """Jobs at once, for the study's time left."""
        return 1

    def describe(self) -> str:
        return f"the {self.name} executor"

    def notes(self, options) -> list[str]:
        """Warnings about these options on this executor, said once before training."""
        return []

    def run(self, jobs: list[Job], handle) -> None:
        raise NotImplementedError


def open_executor(options, device: str) -> Executor:
    """The executor the options name ("auto": Ray with --ray-address, else a process pool or this process)."""
    kind = options.executor
    if kind == "auto":
        kind = "ray" if options.ray_address else "process"
    entry = EXECUTORS.entry(kind)
    for other in EXECUTORS.names():
        own = EXECUTORS.entry(other).meta.get("options", ())
        if other != kind and any(getattr(options, o, None) is not None for o in own if o not in entry.meta.get("options", ())):
            flags = [f"--{o.replace('_', '-')}" for o in own]
            where = "a process pool or this process" if options.executor == "auto" else f"the {kind} executor"
            raise UserError(f"{', '.join(flags[:-1])} and {flags[-1]} are for --executor {other} (this run would use "
                            f"{where})" if len(flags) > 1 else f"{flags[0]} is for --executor {other} (this run "
                            f"would use {where})")
    return entry.build(options, device)
