"""A stored study as every exporter sees it: runs with their identity, flat params, metrics and verdicts.

Built once from the store (no training), before any exporter writes anything,
so a bad study name or a missing output folder stops the export with one line
and nothing written. The exporters only map this onto their tool's terms.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from nnstudy import history, run_status
from nnstudy.store import Store, load_results
from nnstudy.store.results import RunResult, StudyResults

# Per-epoch metrics every run stores (EpochRow fields), exported with step = epoch.
EPOCH_METRICS = (*history.EPOCH_METRICS, "lr")
# Runs with numbers to export; pending and running ones are still changing.
FINISHED = run_status.ENDED


def metric_name(key: str) -> str:
    """A probe key ("name" or "name|layer", "shift_acc@2") as a metric or tag name MLflow and TensorBoard accept.

    MLflow allows only letters, digits and ``_ - . / space`` and rejects names that are not
    normalised paths; the layer becomes a path part so the tools group a probe's layers.
    """
    name = key.replace("|", "/").replace("@", "_at_")
    name = re.sub(r"[^\w./ -]", "_", name)
    name = re.sub(r"/+", "/", name).strip("/")
    return "/".join("_" if part in ("", ".", "..") else part for part in name.split("/"))


def flatten(config: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """A nested config as {"train.lr": 0.05, ...}; lists and None as JSON text, so every value is a scalar."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def grid_params(results: StudyResults, variant: str) -> dict[str, str | int | float | bool]:
    """A grid cell's coordinates as params, {"grid.model.activation": "relu", ...} ({} for a variant written by
    hand), so MLflow's and TensorBoard's own comparison views can group and filter runs by factor."""
    coords = ((results.grid or {}).get("cells") or {}).get(variant, {})
    return flatten({f"grid.{path}": value for path, value in coords.items()})


@dataclass
class ExportRun:
    """One (variant, seed) run to export."""

    result: RunResult
    config_hash: str
    identity: str  # study/variant/seed-k/config_hash: the same run in the store and in the tool
    params: dict[str, str | int | float | bool]
    verdicts: dict[str, str]  # tag -> verdict of the comparisons of this run's variant

    @property
    def name(self) -> str:
        return f"{self.result.variant}/seed-{self.result.seed}"

    @property
    def state(self) -> str:
        """What changes when a run with the same identity gains numbers (a retried or resumed run)."""
        return f"{self.result.status}:{len(self.result.history)}:{len(self.result.probes)}"

    def epoch_metrics(self) -> list[tuple[str, int, float]]:
        """(name, epoch, value) for every stored epoch; missing values are left out."""
        return [(m, row.epoch, float(getattr(row, m))) for row in self.result.history for m in EPOCH_METRICS
                if not _missing(getattr(row, m))]

    def probe_metrics(self) -> list[tuple[str, int, float]]:
        """(probe/<name>[/<layer>], epoch, value); epoch 0 is at initialisation."""
        return [(f"probe/{metric_name(key)}", epoch, float(value)) for epoch, values in sorted(self.result.probes.items())
                for key, value in values.items() if value is not None]

    def final(self, metric: str) -> float:
        row = self.result.final
        value = getattr(row, metric) if row is not None else None
        return math.nan if value is None else float(value)


@dataclass
class StudyExport:
    """Everything an exporter writes about one stored study."""

    results: StudyResults
    runs: list[ExportRun]
    verdicts: dict[str, str]  # tag -> verdict, every comparison of the study
    claims: list[dict] = field(default_factory=list)  # {"text", "source", "verdict"} in file order
    skipped: int = 0  # runs still pending or running: not exported

    @property
    def name(self) -> str:
        return self.results.name

    def report_files(self) -> list[Path]:
        """The report and its figures, those that exist (a study whose report was never built has none)."""
        folder = self.results.out_dir
        files = [folder / "report.html", folder / "report.md", *sorted((folder / "figures").glob("*"))]
        return [f for f in files if f.is_file()]

    def facts(self) -> dict[str, str]:
        """Study-level facts, as text: they may change between exports, so they are tags, not params."""
        r = self.results
        return {"baseline": r.baseline, "variants": ",".join(r.variants), "seeds": ",".join(map(str, r.seeds)),
                "report_epochs": ",".join(map(str, r.report_epochs)), "dataset": str(r.dataset.get("name", ""))}


def verdict_tag(metric: str, epoch: int, variant: str) -> str:
    return metric_name(f"verdict.{metric}.epoch{epoch}.{variant}")


def load_study_export(out_dir: str | Path, name: str) -> StudyExport:
    """Read a study from the store in `out_dir` (never writing it) and compute its verdicts."""
    from nnstudy.stats.claims import check_claims
    from nnstudy.stats.study import compare_study

    store = Store(out_dir, create=False)
    try:
        results = load_results(store, name)  # an unknown name: one line naming the studies there
        hashes = {(r.variant, r.seed): r.config_hash for r in store.runs(name)}
    finally:
        store.close()
    by_variant: dict[str, dict[str, str]] = {}
    verdicts = {}
    for c in compare_study(results):
        tag = verdict_tag(c.metric, c.epoch, c.variant)
        verdicts[tag] = by_variant.setdefault(c.variant, {})[tag] = c.verdict
    # Only text, source and verdict: the rest of ClaimResult is the claims module's own business.
    claims = [{"text": c.text, "source": c.source, "verdict": c.verdict} for c in check_claims(results)]
    runs = []
    for r in results.runs:
        if r.status not in FINISHED:
            continue
        config_hash = hashes[(r.variant, r.seed)]
        runs.append(ExportRun(result=r, config_hash=config_hash,
                              identity=f"{name}/{r.variant}/seed-{r.seed}/{config_hash}",
                              params={"variant": r.variant, "seed": r.seed, **grid_params(results, r.variant),
                                      **flatten(r.config)},
                              verdicts=by_variant.get(r.variant, {})))
    return StudyExport(results=results, runs=runs, verdicts=verdicts, claims=claims,
                       skipped=len(results.runs) - len(runs))


def _missing(value) -> bool:
    """Not measured: None, or NaN (the test set is not evaluated on every epoch of a long run)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
