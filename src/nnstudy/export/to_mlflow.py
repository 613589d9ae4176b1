"""Export a study to MLflow: the study a parent run, each (variant, seed) a nested run.

A nested run holds its resolved config as params (`train.lr`; a grid cell's coordinates also
as `grid.model.activation`, ...), the per-epoch metrics and the probes with step = epoch, its
comparisons' verdicts as tags and
its run folder as artifacts; the parent holds every verdict and claim as tags
and the report with its figures as artifacts.

Exporting again adds nothing twice. Every run carries a tag with its identity
(study/variant/seed-k/config hash; the parent: the study name), and the export
first looks its runs up by those tags:
1) a run already there whose numbers are unchanged is kept; only its verdict
   tags are brought up to date (they depend on the other runs);
2) a run whose numbers changed since (a failed run retried, or an export that
   was interrupted) is deleted and written anew: MLflow appends metrics, so
   logging into the old run would give each epoch twice;
3) a run whose config changed has a new identity: a new run; the old one stays
   in MLflow, as a record of what was exported then.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from nnstudy.errors import UserError, first_line
from nnstudy.export.study import ExportRun, StudyExport

ID_TAG, STUDY_TAG, STATE_TAG = "nnstudy.id", "nnstudy.study", "nnstudy.state"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag for nesting
VERDICT_PREFIXES = ("verdict.", "claim.")  # tags an export rewrites whole, dropping those no longer made
# MLflow's limits for one log_batch call, and for a param or tag value.
PARAMS_PER_BATCH, METRICS_PER_BATCH, MAX_PARAM_VALUE, MAX_TAG_VALUE = 100, 1000, 6000, 8000
INSTALL = "pip install 'nnstudy[export]' (or pip install mlflow)"


def check(tracking_uri: str | None = None, experiment: str | None = None) -> None:
    """MLflow is installed and the tracking URI can be used, before anything is written."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError(f"--to mlflow needs MLflow, which is not installed; {INSTALL}") from None
    uri = _uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        _reachable(uri)
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent  # sqlite:///rel.db or sqlite:////abs/path.db
        if not folder.is_dir():
            raise UserError(f"--tracking-uri {uri}: folder {folder} does not exist; create it or choose another "
                            "database path")


def export(study: StudyExport, tracking_uri: str | None = None, experiment: str | None = None) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = _uri(tracking_uri)
    name = experiment or study.name
    try:
        with _quiet():
            client = MlflowClient(tracking_uri=uri)
            counts = _export(client, _experiment(client, name, uri), study)
    except MlflowException as exc:
        raise UserError(f"MLflow at {uri}: {first_line(exc)}; fix it and export again (runs already exported are kept, "
                        "none is added twice)") from None
    skipped = f"; {study.skipped} pending or running not exported" if study.skipped else ""
    return (f"mlflow: {study.name} -> experiment {name!r} at {uri}: parent run {counts.pop('parent')}; "
            f"{counts['added']} runs added, {counts['replaced']} replaced, {counts['kept']} unchanged{skipped}")


# ---------------------------------------------------------------- checks and setup


def _uri(tracking_uri: str | None) -> str:
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UserError("--to mlflow needs --tracking-uri URI (or MLFLOW_TRACKING_URI), e.g. sqlite:///mlflow.db "
                        "or http://127.0.0.1:5000")
    return uri


def _reachable(uri: str) -> None:
    """Something answers at the server's address (MLflow itself retries for minutes before it gives up)."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    except urllib.error.HTTPError:
        return  # it answered; whether it is MLflow, MLflow's own calls will say
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach the MLflow tracking server at {uri} ({reason}); start it (e.g. mlflow server "
                        "--host 127.0.0.1 --port 5000) or fix --tracking-uri") from None


@contextmanager
def _quiet():
    """MLflow logs its database set-up at INFO on stderr; the command prints one line of its own."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _experiment(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise UserError(f"MLflow experiment {name!r} at {uri} is deleted; restore it (mlflow experiments "
                            "restore) or pass --experiment OTHER_NAME")
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        # Beside the database, as `mlflow server` keeps them, not in whatever folder the command ran from.
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _existing(client, experiment_id: str, study: str) -> dict[str, object]:
    """The study's active runs in the experiment, by identity tag (study names are [A-Za-z0-9_.-]: safe to quote)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = '{study}'", max_results=1000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return {r.data.tags[ID_TAG]: r for r in runs if ID_TAG in r.data.tags}


# ---------------------------------------------------------------- writing


def _export(client, experiment_id: str, study: StudyExport) -> dict:
    existing = _existing(client, experiment_id, study.name)
    parent = existing.get(study.name)
    parent_id = parent.info.run_id if parent else client.create_run(
        experiment_id, run_name=study.name, tags={ID_TAG: study.name, STUDY_TAG: study.name}).info.run_id
    counts = {"parent": parent_id, "added": 0, "replaced": 0, "kept": 0}
    for run in study.runs:
        old = existing.get(run.identity)
        tags = {PARENT_TAG: parent_id, **run.verdicts}
        if old is not None and old.data.tags.get(STATE_TAG) == run.state:
            _set_tags(client, old, tags)
            counts["kept"] += 1
            continue
        if old is not None:
            client.delete_run(old.info.run_id)
        _write_run(client, experiment_id, study.name, run, tags)
        counts["replaced" if old is not None else "added"] += 1
    _write_parent(client, parent, parent_id, study)
    return counts


def _write_run(client, experiment_id: str, study: str, run: ExportRun, tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param

    r = run.result
    tags = {ID_TAG: run.identity, STUDY_TAG: study, "nnstudy.variant": r.variant, "nnstudy.seed": str(r.seed),
            "nnstudy.config_hash": run.config_hash, "nnstudy.status": r.status, **tags}
    if r.error:
        tags["nnstudy.error"] = r.error[:MAX_TAG_VALUE]
    run_id = client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
    params = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in run.params.items()]
    for i in range(0, len(params), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i:i + PARAMS_PER_BATCH])
    now = int(time.time() * 1000)
    metrics = [Metric(name, value, now, step) for name, step, value in run.epoch_metrics() + run.probe_metrics()]
    for i in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + METRICS_PER_BATCH])
    if r.run_dir is not None and r.run_dir.is_dir():
        client.log_artifacts(run_id, str(r.run_dir))
    client.set_tag(run_id, STATE_TAG, run.state)  # last: a run without it was interrupted, and is written anew
    client.set_terminated(run_id, status="FAILED" if r.status == "failed" else "FINISHED")


def _write_parent(client, old, run_id: str, study: StudyExport) -> None:
    tags = {f"nnstudy.{k}": v for k, v in study.facts().items()}
    tags.update(study.verdicts)
    for i, claim in enumerate(study.claims, 1):
        tags[f"claim.{i}"] = claim["verdict"]
        tags[f"claim.{i}.text"] = claim["text"][:MAX_TAG_VALUE]
        if claim["source"]:
            tags[f"claim.{i}.source"] = claim["source"][:MAX_TAG_VALUE]
    _set_tags(client, old, tags, run_id)
    for path in study.report_files():  # the same artifact paths each time: a new export replaces them
        client.log_artifact(run_id, str(path), "figures" if path.parent.name == "figures" else None)
    client.set_terminated(run_id, status="FINISHED")


def _set_tags(client, old, tags: dict[str, str], run_id: str | None = None) -> None:
    """Set `tags` on a run, dropping its verdict and claim tags that this export no longer makes."""
    from mlflow.entities import RunTag

    run_id = run_id or old.info.run_id
    if old is not None:
        for key in old.data.tags:
            if key.startswith(VERDICT_PREFIXES) and key not in tags:
                client.delete_tag(run_id, key)
    items = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, tags=items[i:i + PARAMS_PER_BATCH])
