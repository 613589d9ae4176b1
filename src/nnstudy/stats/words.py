"""Numbers and verdicts in words: metric names, differences, p-values, sentences.

Formatting lives here, once, so the sentences, the report's tables and the
tests all print a number the same way.
"""

from __future__ import annotations

import math

_LABELS = {
    "test_acc": "test accuracy",
    "test_loss": "test loss",
    "train_acc": "train accuracy",
    "train_loss": "train loss",
}
# A p-value is never printed rounded onto or across one of these.
_P_THRESHOLDS = (0.05, 0.01, 0.001)


def metric_label(metric: str) -> str:
    """Human name of a metric: "test_acc" -> "test accuracy", "f1:cat" -> "F1 of class cat"."""
    if metric.startswith("f1:"):
        return f"F1 of class {metric[3:]}"
    return _LABELS.get(metric, metric.replace("_", " "))


def is_fraction(metric: str) -> bool:
    """Whether the metric is a fraction in [0, 1], shown in percentage points."""
    return metric.endswith("_acc") or metric.startswith("f1:")


def format_diff(value: float, metric: str, signed: bool = True, unit: bool = True) -> str:
    """A difference in the metric's display unit ("+0.42 pp" or "-0.0123")."""
    if not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    if is_fraction(metric):
        return f"{100 * value:{sign}.2f}" + (" pp" if unit else "")
    return f"{value:{sign}.4f}"


def format_ci(low: float, high: float, metric: str) -> str:
    """"-0.12 to +0.34 pp"; "unbounded" when the test cannot bound it (equal differences on too few seeds)."""
    if math.isinf(low) and math.isinf(high):
        return "unbounded"
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"{format_diff(low, metric, unit=False)} to {format_diff(high, metric)}"


def format_relative(pct: float) -> str:
    """A relative change in percent: "-0.09% relative"; small ones keep one significant digit."""
    if not math.isfinite(pct):
        return "n/a"
    text = f"{pct:+.2f}"
    if pct != 0 and float(text) == 0:
        text = f"{pct:+.1g}"  # "+0.004", not "+0.00"
    return f"{text}% relative"


def format_p(p: float) -> str:
    """"p = 0.031", "p < 0.001": two significant digits, never rounded onto or across 0.05, 0.01 or 0.001.

    p = 0.0496 prints as "p = 0.0496", not "p = 0.05"; a p so close below a
    threshold that four digits still round onto it prints as "p < 0.05".
    """
    if not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    for digits in (2, 3, 4):
        text = f"{p:.{digits}g}"
        if not any(p < t <= float(text) for t in _P_THRESHOLDS):
            return f"p = {text}"
    return f"p < {min(t for t in _P_THRESHOLDS if t > p):g}"


def sentence(c, verdict: str) -> str:
    """The verdict of a `Comparison` in one or two sentences, accuracies in percentage points.

    The interval is the Holm-adjusted one, the interval the verdict was decided on; where Holm's method
    changed nothing it is the plain 95% CI.
    """
    where = f" on {metric_label(c.metric)}" + (f" at epoch {c.epoch}" if c.epoch >= 0 else "")
    if c.diverged:
        return f"{c.variant} vs {c.baseline}{where}: not compared, because {c.diverged}."
    if getattr(c, "incomparable", None):
        return f"{c.variant} vs {c.baseline}{where}: not compared, because {c.incomparable}."
    left_out = f" Left out because they diverged: {c.excluded}." if c.excluded else ""
    diff = format_diff(c.diff_mean, c.metric)
    ci = f"{interval_name(c)} {format_ci(c.adj_low, c.adj_high, c.metric)}"
    if verdict in ("better", "worse"):
        seeds = f"{c.wins}/{c.n} seeds" if verdict == "better" else f"better on only {c.wins}/{c.n} seeds"
        return (f"{c.variant} is {verdict} than {c.baseline}{where}: {diff} ({ci}), "
                f"Holm {format_p(c.p_holm)}, {seeds}; {c.test}.{left_out}")
    head = f"{c.variant} vs {c.baseline}{where}: no detectable difference"
    if c.n < 2:
        return f"{head}: only {c.n} paired seed(s), a comparison needs at least 2.{left_out}"
    text = f"{head} at n={c.n} (diff {diff}, {ci}, Holm {format_p(c.p_holm)}; {c.test})"
    if math.isfinite(c.mde):
        text += (f"; with this spread, {c.n} seeds can only detect differences of "
                 f"{format_diff(c.mde, c.metric, signed=False)} or more.")
    else:
        text += "."
    return text + left_out


def interval_name(c) -> str:
    """"95% CI" where Holm's method left the level at 95%, else "Holm-adjusted 95% CI"."""
    adjusted = math.isfinite(c.p_holm) and math.isfinite(c.p_value) and c.p_holm > c.p_value
    return "Holm-adjusted 95% CI" if adjusted else "95% CI"
