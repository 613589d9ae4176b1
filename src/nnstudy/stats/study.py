"""Every comparison a study makes, and what its diverged runs mean for them.

A diverged run (its loss became non-finite; its history ends at that epoch)
is never averaged in as a number. A variant that diverged on more than half
of its seeds gets the verdict "diverged"; otherwise its diverged seeds are
left out, and the comparison names them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from nnstudy import run_status
from nnstudy.store.results import METRICS, RunResult, StudyResults

from .paired import Comparison, apply_holm, compare_paired
from .resolution import metric_step

# Runs whose numbers enter the statistics: not failed (no numbers), not diverged (not numbers to average).
EXCLUDED_STATUSES = ("failed", "diverged")


def counts(run: RunResult) -> bool:
    """Whether a run's numbers enter tables and comparisons."""
    return run.status not in EXCLUDED_STATUSES


def diverged_epochs(results: StudyResults, variant: str) -> dict[int, int | None]:
    """Seed -> the epoch its run diverged at, for the variant's diverged runs."""
    return {r.seed: r.diverged_at for r in results.runs_of(variant) if r.status == "diverged"}


def _epoch(epoch: int | None) -> str:
    return "?" if epoch is None else str(epoch)


def divergence(results: StudyResults, variant: str) -> str | None:
    """'B diverged in 4 of 5 seeds (at epochs 1, 1, 2, 3)' when more than half of its finished runs diverged.

    Finished runs are those done or diverged; None when at most half diverged.
    """
    finished = [r for r in results.runs_of(variant) if r.status in run_status.TRAINED]
    epochs = diverged_epochs(results, variant)
    if 2 * len(epochs) <= len(finished):
        return None
    at = ", ".join(_epoch(e) for e in epochs.values())
    who = f"the baseline {variant}" if variant == results.baseline else variant
    seeds = "seed" if len(finished) == 1 else "seeds"
    return f"{who} diverged in {len(epochs)} of {len(finished)} {seeds} (at epoch{'s' if len(epochs) > 1 else ''} {at})"


def _left_out(results: StudyResults, variant: str) -> str | None:
    """'seed 3 (B at epoch 2), seed 4 (A at epoch 5)': seeds dropped from a pair because one side diverged."""
    by_seed: dict[int, list[str]] = {}
    for name in (variant, results.baseline):
        for seed, epoch in diverged_epochs(results, name).items():
            by_seed.setdefault(seed, []).append(f"{name} at epoch {_epoch(epoch)}")
    if not by_seed:
        return None
    return ", ".join(f"seed {seed} ({'; '.join(who)})" for seed, who in sorted(by_seed.items()))


def _loss_of(results: StudyResults, variant: str) -> str | None:
    """The loss a variant trains (from its runs' configs); None when unknown."""
    for run in results.runs_of(variant):
        loss = run.config.get("train", {}).get("loss") if isinstance(run.config, dict) else None
        if loss is not None:
            return str(loss)
    return None


def metric_by_seed(results: StudyResults, variant: str, metric: str, epoch: int) -> dict[int, float]:
    """seed -> the variant's `metric` at `epoch`, from the runs that count (not failed, not diverged) and reached it."""
    out = {}
    for run in results.runs_of(variant):
        row = run.at_epoch(epoch) if counts(run) else None
        if row is not None:
            out[run.seed] = float(getattr(row, metric))
    return out


def compare_study(results: StudyResults, metrics: Sequence[str] = ("test_acc", "test_loss")) -> list[Comparison]:
    """Compare every variant with the baseline at every reported epoch.

    Failed and diverged runs and runs that lack the epoch are skipped; the
    remaining values are paired by seed. A comparison where either side
    diverged on most seeds gets the verdict "diverged" and no statistics.
    Holm is applied over all comparisons returned, which are ordered by
    epoch, then metric, then variant in study order.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")

    def values(variant: str, metric: str, epoch: int) -> dict[int, float]:
        return metric_by_seed(results, variant, metric, epoch)

    others = [v for v in results.variants if v != results.baseline]
    diverged = {v: divergence(results, v) for v in results.variants}
    losses = {v: _loss_of(results, v) for v in results.variants}
    comparisons = []
    for epoch in results.report_epochs:
        for metric in metrics:
            base = values(results.baseline, metric, epoch)
            for variant in others:
                c = compare_paired(base, values(variant, metric, epoch), higher_is_better=METRICS[metric],
                                   variant_name=variant, baseline_name=results.baseline, metric=metric, epoch=epoch,
                                   resolution=metric_step(metric, results))
                why = "; ".join(t for t in (diverged[variant], diverged[results.baseline]) if t)
                scales = metric.endswith("_loss") and losses[variant] != losses[results.baseline]
                if why or scales:
                    nan = math.nan
                    # No statistics: a nan p-value also keeps it out of the Holm family.
                    c = dataclasses.replace(c, diverged=why or None, diff_mean=nan, sd_diff=nan, ci_low=nan, ci_high=nan,
                                            relative_pct=nan, p_value=nan, p_holm=nan, d_z=nan, mde=nan, wins=0,
                                            incomparable=None if why else (
                                                f"{variant} trains {losses[variant]} and {results.baseline} "
                                                f"{losses[results.baseline]}: losses of different kinds, on "
                                                f"different scales"))
                else:
                    c = dataclasses.replace(c, excluded=_left_out(results, variant))
                comparisons.append(c)
    return apply_holm(comparisons)
