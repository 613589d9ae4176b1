"""Where jobs run: in this process, in worker processes, or on a Ray cluster."""

from nnstudy.errors import UserError
from nnstudy.executors.job import Job, execute_job
from nnstudy.executors.local import LocalExecutor, ProcessExecutor, default_workers

__all__ = ["Job", "LocalExecutor", "ProcessExecutor", "check_executor_options", "default_workers", "execute_job",
           "make_executor"]


def check_executor_options(name: str, ray_address: str | None = None, cpus_per_job: float | None = None,
                           gpus_per_job: float | None = None) -> None:
    """The options meant for Ray alone, refused for the other executors."""
    if name != "ray" and (ray_address or cpus_per_job is not None or gpus_per_job is not None):
        where = "a process pool or this process" if name == "auto" else f"the {name} executor"
        raise UserError(f"--ray-address, --cpus-per-job and --gpus-per-job are for --executor ray (this run would use "
                        f"{where})")
    if cpus_per_job is not None and cpus_per_job <= 0:
        raise UserError(f"--cpus-per-job {cpus_per_job:g}: a job needs more than 0 CPUs (fractions are allowed)")


def make_executor(name: str, workers: int, ray_address: str | None = None, device: str = "cpu",
                  cpus_per_job: float | None = None, gpus_per_job: float | None = None, share_cores: bool = False):
    check_executor_options(name, ray_address, cpus_per_job, gpus_per_job)
    if name == "local" or (name == "process" and workers <= 1):
        return LocalExecutor()
    if name == "process":
        return ProcessExecutor(workers, share_cores)
    from nnstudy.executors.ray import RayExecutor
    return RayExecutor(ray_address, cpus_per_job=1 if cpus_per_job is None else cpus_per_job,
                       gpus_per_job=(1 if device == "cuda" else 0) if gpus_per_job is None else gpus_per_job)
