"""Run jobs as Ray tasks: `nnstudy run STUDY --ray-address HOST:PORT` (`--executor ray`: a local Ray).

Each job is one Ray task running the same `execute_job` as the other executors,
so the study file does not change between a laptop and a cluster. A node needs
Ray, nnstudy and the checkpoint folder, nothing of the driver's:
- the dataset comes through Ray's object store (the driver puts each one once),
  not from a cache or data folder on the node;
- tasks stream their events to a queue on the driver's node, and the driver
  alone writes the store and the run folders; tasks write only checkpoints;
- a task asks for `cpus_per_job` CPUs and `gpus_per_job` GPUs, and trains on
  that many torch threads (at least one).
A task whose worker or node died ends with `WorkerLost`: the runner retries its
runs from their last checkpoints, on any node, and fails a run lost twice.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sys
import traceback
from pathlib import Path

from nnstudy.config.schema import RunConfig
from nnstudy.data.study_data import load_study_data
from nnstudy.errors import UserError, first_line
from nnstudy.executors import Executor
from nnstudy.executors.events import JobEnded, RunsFailed, WorkerLost
from nnstudy.executors.job import Job, execute_job
from nnstudy.executors.local import Handler, default_workers
from nnstudy.registry import EXECUTORS

TOKEN_DOCS = "https://docs.ray.io/en/latest/ray-security/token-auth.html"


def _task(job: Job, data, index: int, queue) -> None:
    execute_job(job, lambda event: queue.put((index, event)), data)


@EXECUTORS.register("ray", options=("ray_address", "cpus_per_job", "gpus_per_job"))
def _open_ray(options, device: str) -> "RayExecutor":
    if options.cpus_per_job is not None and options.cpus_per_job <= 0:
        raise UserError(f"--cpus-per-job {options.cpus_per_job:g}: a job needs more than 0 CPUs (fractions are allowed)")
    gpus = (1 if device == "cuda" else 0) if options.gpus_per_job is None else options.gpus_per_job
    return RayExecutor(options.ray_address, 1 if options.cpus_per_job is None else options.cpus_per_job, gpus,
                       workers=options.workers, device=device)


class RayExecutor(Executor):
    name = "ray"
    lost = "Ray worker or its node"

    def __init__(self, address: str | None = None, cpus_per_job: float = 1, gpus_per_job: float = 0,
                 workers: int | None = None, device: str = "cpu"):
        self.workers, self.device = workers, device
        self.ray = connect(address)
        self.threads = max(1, math.floor(cpus_per_job))
        self.remote = self.ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(_task)
        self._shipped: dict[int, tuple] = {}  # id(dataset) -> (dataset, its object ref): each is put once
        nodes = [n["Resources"] for n in self.ray.nodes() if n["Alive"]]
        if not any(r.get("CPU", 0) >= cpus_per_job and r.get("GPU", 0) >= gpus_per_job for r in nodes):
            print(f"nnstudy: no node of the Ray cluster has {cpus_per_job:g} CPU(s) and {gpus_per_job:g} GPU(s) for a "
                  "job; its tasks wait until such a node joins (see --cpus-per-job, --gpus-per-job)", file=sys.stderr)
        self.nodes = len(nodes)

    def parallel(self, n_jobs: int) -> int:
        return self.workers or default_workers(n_jobs, self.device)

    def notes(self, options) -> list[str]:
        if options.checkpoint_dir is None and self.nodes > 1:
            return [f"checkpoints go to the run folders under {Path(options.out).resolve()} on whichever node trains a "
                    "job; unless every node shares that folder, give --checkpoint-dir (a shared folder or "
                    "s3://bucket/prefix) so that a job resumes on another node"]
        return []

    def run(self, jobs: list[Job], handle: Handler) -> None:
        """Run every job; one whose worker or node died ends with `WorkerLost`, the others go on."""
        errors = self.ray.exceptions
        died = (errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError, errors.LocalRayletDiedError)
        queue = self._queue()
        refs = {}
        for i, job in enumerate(jobs):
            # Run folders may be relative to the driver's working directory, which a task does not share.
            on_node = dataclasses.replace(job, threads=self.threads, runs=[
                r if "://" in r.checkpoint_dir else dataclasses.replace(r, checkpoint_dir=os.path.abspath(r.checkpoint_dir))
                for r in job.runs])
            refs[self.remote.remote(on_node, self._dataset(job), i, queue)] = i

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
                        handle(job, WorkerLost(f"{type(exc).__name__}: {_first_line(exc)}"))
                        continue
                    except errors.RayError as exc:  # e.g. nnstudy missing on a node: the job's runs fail, we go on
                        handle(job, RunsFailed(job.run_ids, f"Ray: {_first_line(exc)}", traceback.format_exc()))
                    handle(job, JobEnded())
        except errors.RayError as exc:  # the queue's node or the cluster itself is gone
            raise UserError(f"lost the Ray cluster ({type(exc).__name__}: {_first_line(exc)}); finished epochs are "
                            "checkpointed: rerun the same command to resume") from None
        except BaseException:
            for ref in refs:
                self.ray.cancel(ref, force=True)
            raise
        finally:
            try:
                queue.shutdown()
            except Exception:  # nothing left to shut down when the cluster went away
                pass

    def _dataset(self, job: Job):
        """The job's dataset in the object store; the driver has it decoded already (load_study_data caches it)."""
        data = load_study_data(RunConfig.model_validate(job.config), job.cache_dir)
        if id(data) not in self._shipped:
            self._shipped[id(data)] = (data, self.ray.put(data))
        return self._shipped[id(data)][1]

    def _queue(self):
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the head node: losing a worker node never loses the queue, nor the events in it (losing the head
        # loses the cluster anyway). The driver's own node can be a worker node: it attaches to any raylet here.
        # Hard affinity: a soft one let Ray spill the actor to another node (seen with Ray 2.60).
        heads = [n["NodeID"] for n in self.ray.nodes() if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})]
        node, soft = (heads[0], False) if heads else (self.ray.get_runtime_context().get_node_id(), True)
        here = NodeAffinitySchedulingStrategy(node, soft=soft)
        return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})


# --- connecting ------------------------------------------------------------------------------
def connect(address: str | None):
    """The `ray` module, joined to the cluster at `address` ('auto': the one started on this machine).

    None starts a new local Ray, unless RAY_ADDRESS names a cluster (as in a Ray
    job); Ray itself would join whatever cluster was last started here, even one
    long dead. Any failure to connect is one line (UserError) that says what to set.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto"):
        _use_token_if_held()
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'nnstudy[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto") and not address.startswith("ray://"):
        _check_address(address)
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, its own errors
        if _refused_token(exc):
            raise UserError(_token_help(address)) from None
        where = f"--ray-address {address}" if address else "starting a local Ray"
        raise UserError(f"{where}: {_first_line(exc)}; start a cluster with `ray start --head` and give the "
                        "address it prints, or leave --ray-address out for a local Ray") from None
    return ray


def _use_token_if_held() -> None:
    """Connect with token authentication when RAY_AUTH_MODE is unset and this machine holds a Ray token.

    Since Ray 2.59 a cluster started here (`ray.init()`, or `ray start --head`
    once ~/.ray/auth_token exists) wants a token, but `ray.init(address=...)`
    sends it only with RAY_AUTH_MODE=token, as Ray's docs say (TOKEN_DOCS);
    without, it retries for 20 seconds and fails. A cluster without
    authentication ignores the token. Ray reads the mode when it is imported.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file)):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:  # imported already: make it read the mode again, as Ray does itself
        try:
            from ray._raylet import Config
            Config.initialize("")
        except (ImportError, AttributeError):
            pass


def _check_address(address: str) -> None:
    """Fail fast, in one line, where Ray would retry for minutes (nothing listening) or 20 s (a refused token)."""
    host, sep, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)) if sep else (address, 6379), timeout=5).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserError(f"--ray-address {address}: no Ray cluster answers there ({reason}); give the address that "
                        "`ray start --head` printed (HOST:PORT), or 'auto' on a node of the cluster") from None
    try:
        from ray._raylet import GcsClient  # Ray's own client for the cluster's control service
        GcsClient(address=address)
    except ImportError:
        return
    except Exception as exc:
        if _refused_token(exc):
            raise UserError(_token_help(address)) from None  # anything else: ray.init says what it is


def _refused_token(exc: BaseException | None) -> bool:
    while exc is not None:
        if type(exc).__name__ == "AuthenticationError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _token_help(address: str | None) -> str:
    mode = os.environ.get("RAY_AUTH_MODE")
    what = "refused this machine's token" if mode == "token" else f"wants a token (RAY_AUTH_MODE is {mode or 'unset'} here)"
    return (f"the Ray cluster at {address} {what}: copy the token from the head node (`ray get-auth-token` there) to "
            f"~/.ray/auth_token here, or set RAY_AUTH_TOKEN, and set RAY_AUTH_MODE=token; see {TOKEN_DOCS}")


def _first_line(exc: BaseException) -> str:
    return first_line(exc).rstrip(".")
