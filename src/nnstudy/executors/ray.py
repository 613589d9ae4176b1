"""Run jobs as Ray tasks: `nnstudy run STUDY --executor ray [--ray-address ADDR]`.

Each job is one Ray task running the same `execute_job` as the other
executors, so the study file does not change between a laptop and a cluster.
Tasks stream their events back through a Ray queue and the driver alone
writes the store and the run folders; tasks write only their checkpoints.
"""

from __future__ import annotations

from nnstudy.errors import UserError
from nnstudy.executors.events import JobEnded, WorkerLost
from nnstudy.executors.job import Job, execute_job
from nnstudy.executors.local import Handler


def _task(job: Job, index: int, queue) -> None:
    execute_job(job, lambda event: queue.put((index, event)))


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1, gpus_per_job: float = 0):
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'nnstudy[ray]' (or pip install ray)") from None
        self.ray, self.queue_type = ray, Queue
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        self.remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(_task)

    def run(self, jobs: list[Job], handle: Handler) -> None:
        """Run every job; one whose worker or node died ends with `WorkerLost`, the others go on."""
        errors = self.ray.exceptions
        died = (errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError)
        queue = self.queue_type()
        refs = {self.remote.remote(job, i, queue): i for i, job in enumerate(jobs)}

        def drain() -> None:
            while not queue.empty():
                for index, event in queue.get_nowait_batch(queue.qsize()):
                    handle(jobs[index], event)

        try:
            while refs:
                done, _ = self.ray.wait(list(refs), num_returns=1, timeout=1.0)
                drain()  # a task puts its events (blocking) before it returns
                for ref in done:
                    job = jobs[refs.pop(ref)]
                    try:
                        self.ray.get(ref)
                    except died as exc:
                        handle(job, WorkerLost(type(exc).__name__))
                        continue
                    handle(job, JobEnded())
        except BaseException:
            for ref in refs:
                self.ray.cancel(ref, force=True)
            raise
        finally:
            queue.shutdown()
