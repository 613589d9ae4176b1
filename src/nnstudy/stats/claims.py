"""Claims checked: a study's stated expectations against per-seed evidence.

A claim names a metric (a final or per-epoch metric, or one computed from the
mechanism probes), a variant, and either a baseline variant (paired by seed)
or a fixed value, with a direction:

- "greater" / "less": the same paired test as the comparisons (t-test, or the
  exact sign-flip test when the differences do not vary), one-sided since a
  claim states its direction: "supported" when significant at 5% in the
  stated direction, "contradicted" when significant the other way, otherwise
  "not shown at n=K seeds". Each claim is a hypothesis its source stated
  before the study ran, so the claims are not adjusted as a family (the
  variant comparisons are, with Holm);
- "within": an equivalence check (TOST at 5%): "supported" when the 90%
  interval of the mean difference lies inside +-tolerance, "contradicted"
  when it lies wholly outside, otherwise "not shown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnstudy.registry import CLAIM_METRICS
from nnstudy.store.results import RunResult, StudyResults

from .paired import compare_paired
from .summary import t_interval

SUPPORTED, CONTRADICTED, NOT_SHOWN = "supported", "contradicted", "not shown"


# ---------------------------------------------------------------- metrics: (run, epoch, claim, arg) -> value


def _layers(run: RunResult, epoch: int, probe: str) -> list[float]:
    values = run.probes.get(epoch, {})
    return [v for k, v in values.items() if k.startswith(probe + "|")]


def _history(field: str):
    def value(run, epoch, claim, arg):
        row = run.at_epoch(epoch)
        return getattr(row, field) if row is not None else math.nan
    return value


for _field in ("test_acc", "test_loss", "train_acc", "train_loss"):
    CLAIM_METRICS.register(_field, _history(_field), fraction=_field.endswith("acc"), label=_field.replace("_", " "))


@CLAIM_METRICS.register("dead_fraction", fraction=True, label="fraction of dead units (mean over activation layers)")
def _dead(run, epoch, claim, arg):
    return _mean(_layers(run, epoch, "dead"))


@CLAIM_METRICS.register("saturated_fraction", fraction=True, label="fraction of saturated activations (mean over layers)")
def _saturated(run, epoch, claim, arg):
    return _mean(_layers(run, epoch, "saturated"))


@CLAIM_METRICS.register("symmetry_index", label="symmetry index of the hidden layers (1: every unit a copy)")
def _symmetry(run, epoch, claim, arg):
    return _mean(_layers(run, epoch, "symmetry")[:-1])  # the output layer's units are the classes: meant to differ


@CLAIM_METRICS.register("first_layer_grad_norm", label="weight-gradient norm of the first layer (after backpropagating "
                                                      "through all the others)")
def _first_grad(run, epoch, claim, arg):
    norms = _layers(run, epoch, "grad_norm")
    return norms[0] if norms else math.nan


@CLAIM_METRICS.register("grad_norm_ratio", label="weight-gradient norm, first layer / last layer")
def _grad_ratio(run, epoch, claim, arg):
    norms = _layers(run, epoch, "grad_norm")
    return norms[0] / norms[-1] if len(norms) >= 2 and norms[-1] > 0 else math.nan


@CLAIM_METRICS.register("act_std_ratio", label="activation std, last activation layer / first")
def _act_ratio(run, epoch, claim, arg):
    stds = _layers(run, epoch, "act_std")
    return stds[-1] / stds[0] if len(stds) >= 2 and stds[0] > 0 else math.nan


@CLAIM_METRICS.register("shift_accuracy_drop", report_epochs=True, fraction=True,
                        label="test accuracy lost when images shift by k pixels")
def _shift_drop(run, epoch, claim, arg):
    p = run.probes.get(epoch, {})
    return p.get("shift_acc@0", math.nan) - p.get(f"shift_acc@{arg}", math.nan)


@CLAIM_METRICS.register("shift_agreement", report_epochs=True, fraction=True,
                        label="agreement with unshifted predictions, images shifted by k pixels")
def _shift_agree(run, epoch, claim, arg):
    return run.probes.get(epoch, {}).get(f"shift_agree@{arg}", math.nan)


@CLAIM_METRICS.register("confident_errors", report_epochs=True, fraction=True,
                        label="test images wrong with softmax probability >= 0.9")
def _confident(run, epoch, claim, arg):
    return run.probes.get(epoch, {}).get("confident_errors", math.nan)


@CLAIM_METRICS.register("params", label="trainable parameters", exact=True)
def _params(run, epoch, claim, arg):
    return run.probes.get(0, {}).get("params", float(run.n_params or math.nan))


@CLAIM_METRICS.register("flops_per_image", label="forward FLOPs per image", exact=True)
def _flops(run, epoch, claim, arg):
    return run.probes.get(0, {}).get("flops_per_image", math.nan)


@CLAIM_METRICS.register("step_ms", label="milliseconds per training step (mean over epochs)")
def _step(run, epoch, claim, arg):
    return _mean([p["step_ms"] for p in run.probes.values() if "step_ms" in p])


@CLAIM_METRICS.register("epochs_to_acc", label="first epoch reaching the threshold test accuracy")
def _epochs_to(run, epoch, claim, arg):
    """Never reached: one past the last epoch (a censored value, so the seed still counts)."""
    if not run.history:
        return math.nan
    return float(next((r.epoch for r in run.history if r.test_acc >= claim["threshold"]), run.history[-1].epoch + 1))


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class ClaimResult:
    text: str
    source: str
    metric: str
    label: str
    variant: str
    reference: str  # "baseline relu" or "value 1.0"
    direction: str
    epoch: int
    n: int
    variant_mean: float
    reference_mean: float
    diff_mean: float
    ci_low: float  # of the mean difference (95%; 90% for "within")
    ci_high: float
    p_value: float  # one-sided, for the claim (nan for "within" claims)
    verdict: str
    evidence: str  # one sentence with the numbers


def metric_values(results: StudyResults, claim: dict, variant: str, epoch: int) -> dict[int, float]:
    """Per-seed values of a claim's metric for one variant (failed runs and missing values left out)."""
    name, _, arg = claim["metric"].partition("@")
    fn = CLAIM_METRICS.get(name)
    out = {}
    for run in results.runs_of(variant):
        if run.status == "failed":
            continue
        value = fn(run, epoch, claim, arg)
        if value is not None and math.isfinite(value):
            out[run.seed] = float(value)
    return out


def check_claims(results: StudyResults) -> list[ClaimResult]:
    """Every claim of the study, in file order, with its evidence and verdict."""
    checked = []
    for claim in results.claims:
        epoch = claim.get("epoch")
        if epoch is None:
            epoch = max((r.history[-1].epoch for r in results.runs_of(claim["variant"]) if r.history), default=0)
        v = metric_values(results, claim, claim["variant"], epoch)
        if claim.get("baseline") is not None:
            b = metric_values(results, claim, claim["baseline"], epoch)
            reference = f"{claim['baseline']}"
        else:
            b = {seed: float(claim["value"]) for seed in v}
            reference = f"{claim['value']:g}"
        c = compare_paired(b, v, higher_is_better=claim["direction"] != "less", variant_name=claim["variant"],
                           baseline_name=reference, metric=claim["metric"], epoch=epoch)
        checked.append((claim, epoch, reference, c))
    out = []
    for claim, epoch, reference, c in checked:
        p_for = _one_sided(c) if claim["direction"] != "within" else math.nan
        out.append(_verdict(claim, epoch, reference, c, p_for, 1 - p_for))
    return out


def _one_sided(c) -> float:
    """P-value of "the difference lies in the claimed direction" from the two-sided test (symmetric null)."""
    if c.n < 2 or not math.isfinite(c.p_value):
        return math.nan
    favours = (c.diff_mean > 0) == c.higher_is_better and c.diff_mean != 0
    return c.p_value / 2 if favours else 1 - c.p_value / 2


def _verdict(claim: dict, epoch: int, reference: str, c, p_for: float, p_against: float) -> ClaimResult:
    entry = CLAIM_METRICS.entry(claim["metric"].partition("@")[0])
    fraction = entry.meta.get("fraction", False)
    if claim["direction"] == "within":
        low, high = _interval(c, 0.90, exact=entry.meta.get("exact", False))
        tol = claim.get("tolerance", 0.0)
        if c.n < 2:
            verdict = NOT_SHOWN
        elif -tol <= low and high <= tol:
            verdict = SUPPORTED
        elif high < -tol or low > tol:
            verdict = CONTRADICTED
        else:
            verdict = NOT_SHOWN
    else:
        low, high = c.ci_low, c.ci_high
        verdict = SUPPORTED if p_for < 0.05 else CONTRADICTED if p_against < 0.05 else NOT_SHOWN
    shown = (lambda x: f"{100 * x:.2f}%") if fraction else (lambda x: f"{x:.4g}")
    diff = (lambda x: f"{100 * x:+.2f} pp") if fraction else (lambda x: f"{x:+.4g}")
    tol = claim.get("tolerance", 0.0)
    relation = {"greater": "greater than", "less": "less than",
                "within": f"within {f'{100 * tol:.2f} pp' if fraction else f'{tol:g}'} of"}[claim["direction"]]
    if c.n < 2:
        evidence = f"only {c.n} seed(s) with this metric; a verdict needs at least 2"
    else:
        level = "90%" if claim["direction"] == "within" else "95%"
        against = f"{reference} {shown(c.baseline_mean)}" if claim.get("baseline") is not None else shown(c.baseline_mean)
        interval = (f"{level} CI {diff(low)} to {diff(high)}" if math.isfinite(low) and math.isfinite(high)
                    else "every seed gave the same difference")
        evidence = f"{claim['variant']} {shown(c.variant_mean)} vs {against}: difference {diff(c.diff_mean)} ({interval}), n={c.n} seeds"
    if verdict == NOT_SHOWN and c.n >= 2:
        evidence += f"; not shown at n={c.n} seeds"
    return ClaimResult(
        text=claim["text"], source=claim.get("source", ""), metric=claim["metric"], label=entry.meta.get("label", ""),
        variant=claim["variant"], reference=reference, direction=relation, epoch=epoch, n=c.n,
        variant_mean=c.variant_mean, reference_mean=c.baseline_mean, diff_mean=c.diff_mean, ci_low=low, ci_high=high,
        p_value=p_for, verdict=verdict, evidence=evidence)


def _interval(c, confidence: float, exact: bool) -> tuple[float, float]:
    """The t-interval of the mean paired difference at `confidence`.

    Differences that do not vary say nothing about their spread (unbounded),
    except for a metric that is exact by construction (parameters, FLOPs),
    where they are the difference itself.
    """
    if c.n < 2:
        return math.nan, math.nan
    if c.sd_diff == 0:
        return (c.diff_mean, c.diff_mean) if exact else (-math.inf, math.inf)
    return t_interval(c.diff_mean, c.sd_diff, c.n, confidence)


__all__ = ["CONTRADICTED", "NOT_SHOWN", "SUPPORTED", "ClaimResult", "check_claims", "metric_values"]
