"""Run jobs as Ray tasks: `nnstudy run STUDY --executor ray [--ray-address ADDR]`.

Each job is one Ray task running the same `execute_job` as the other
executors, so the study file does not change between a laptop and a cluster.
Workers write to the study's SQLite store and run folders directly: on a
multi-node cluster the output folder must be on a filesystem every node
mounts (and the data cache likewise).
"""

from __future__ import annotations

from typing import Callable

from nnstudy.errors import UserError
from nnstudy.executors.job import Job, JobResult, execute_job
from nnstudy.executors.local import WorkerDied


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1, gpus_per_job: float = 0):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'nnstudy[ray]' (or pip install ray)") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        self.remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(execute_job)

    def run(self, jobs: list[Job], on_done: Callable[[JobResult], None], tick: Callable[[], None] = lambda: None) -> None:
        """Run every job; a job whose worker or node died is reported at the end as `WorkerDied`.

        Unlike a process pool, the other tasks are unaffected, so they finish first.
        """
        errors = self.ray.exceptions
        died = (errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError)
        refs = [self.remote.remote(job) for job in jobs]
        lost = []
        try:
            while refs:
                done, refs = self.ray.wait(refs, num_returns=1, timeout=1.0)
                for ref in done:
                    try:
                        result = self.ray.get(ref)
                    except died as exc:
                        lost.append(type(exc).__name__)
                        continue
                    on_done(result)
                tick()
        except BaseException:
            for ref in refs:
                self.ray.cancel(ref, force=True)
            raise
        if lost:
            raise WorkerDied(f"{len(lost)} Ray task(s) lost their worker: {', '.join(sorted(set(lost)))}")
