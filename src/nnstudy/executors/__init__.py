"""Where jobs run: in this process, in worker processes, or on a Ray cluster."""

from nnstudy.executors.job import Job, execute_job
from nnstudy.executors.local import LocalExecutor, ProcessExecutor, default_workers

__all__ = ["Job", "LocalExecutor", "ProcessExecutor", "default_workers", "execute_job", "make_executor"]


def make_executor(name: str, workers: int, ray_address: str | None = None, device: str = "cpu"):
    if name == "local" or (name == "process" and workers <= 1):
        return LocalExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    from nnstudy.executors.ray import RayExecutor
    return RayExecutor(ray_address, gpus_per_job=1 if device == "cuda" else 0)
