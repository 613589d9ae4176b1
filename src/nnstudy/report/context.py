"""Turn `StudyResults` into the plain, pre-formatted values the templates show.

All number formatting happens here, once, so the HTML and the Markdown
report show identical text and the tests can format the same way.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from nnstudy import run_status
from nnstudy.stats.paired import MIN_SEEDS, VERDICT_RULE, Comparison
from nnstudy.stats.per_class import (
    classification_table,
    confusion_by_seed,
    mean_confusion,
    most_confused_pairs,
    per_class_f1_differences,
)
from nnstudy.stats.study import counts, divergence
from nnstudy.stats.summary import Summary, summarize
from nnstudy.stats.words import format_ci, format_diff, format_p, format_relative, metric_label
from nnstudy.store.results import RunResult, StudyResults

STATUSES = run_status.ALL
TABLE_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
DATASET_FIELDS = [  # (key in results.dataset, label)
    ("name", "name"),
    ("n_train", "training images"),
    ("n_test", "test images"),
    ("image_shape", "image shape"),
    ("fingerprint", "fingerprint"),
]
FIXED_SPLIT = "The train/test split is fixed: every seed and every variant uses the same images."
# Settings each run records about itself (RunResult.settings), in display order, with their labels.
SETTING_LABELS = {"device": "device", "precision": "precision", "compile": "torch.compile",
                  "vectorized": "seeds stacked", "threads": "threads", "threads_from_epoch": "threads from epoch",
                  "stacked_with": "one stack with", "not_stacked": "not stacked because",
                  "plan": "planned stack, estimated cost, worker share"}
HIDDEN_SETTINGS = ("host",)  # a machine name says nothing about the results


# ---------------------------------------------------------------- formatting


def fmt_mean_ci(s: Summary, percent: bool) -> str:
    """'91.23% ± 0.45' (accuracy) or '0.2345 ± 0.0123' (loss); ± is the 95% CI half-width."""
    if s.n == 0 or not math.isfinite(s.mean):
        return "—"
    scale, digits, unit = (100.0, 2, "%") if percent else (1.0, 4, "")
    text = f"{scale * s.mean:.{digits}f}{unit}"
    if math.isfinite(s.ci_high):
        text += f" ± {scale * (s.ci_high - s.ci_low) / 2:.{digits}f}"
    return text


def fmt_sd(s: Summary, percent: bool) -> str:
    if not math.isfinite(s.std):
        return "—"
    return f"{(100 if percent else 1) * s.std:.{2 if percent else 4}f}"


def fmt_score(s: Summary) -> str:
    """A per-class precision/recall/F1 (a fraction) as mean ± CI half-width, 3 decimals."""
    if s.n == 0 or not math.isfinite(s.mean):
        return "—"
    text = f"{s.mean:.3f}"
    if math.isfinite(s.ci_high):
        text += f" ± {(s.ci_high - s.ci_low) / 2:.3f}"
    return text


def fmt_p(p: float) -> str:
    """A p-value for a table cell (the column already says "p")."""
    return format_p(p).removeprefix("p = ")


def fmt_num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"


# ---------------------------------------------------------------- runs


def usable(run: RunResult) -> bool:
    """Runs whose numbers enter tables, curves and confusion matrices: not failed, not diverged (as compare_study)."""
    return counts(run)


def final_epoch(results: StudyResults) -> int | None:
    if results.report_epochs:
        return results.report_epochs[-1]
    epochs = [r.history[-1].epoch for r in results.runs if r.history]
    return max(epochs) if epochs else None


def variant_rows(results: StudyResults, epoch: int | None) -> list[dict]:
    """One row per variant: each metric as mean ± CI over the runs that reached `epoch`."""
    rows = []
    for variant in results.variants:
        runs = [r for r in results.runs_of(variant) if usable(r)]
        reached = [r.at_epoch(epoch) for r in runs] if epoch is not None else []
        reached = [row for row in reached if row is not None]
        params = next((r.n_params for r in results.runs_of(variant) if r.n_params), 0)
        cells = {}
        for metric in TABLE_METRICS:
            s = summarize([getattr(row, metric) for row in reached])
            percent = metric.endswith("_acc")
            cells[metric] = {"mean_ci": fmt_mean_ci(s, percent), "sd": fmt_sd(s, percent), "summary": s}
        rows.append({
            "name": variant, "baseline": variant == results.baseline, "n": len(reached),
            "params": f"{params:,}" if params else "—",
            "diverged": sum(r.status == "diverged" for r in results.runs_of(variant)),  # shown, not counted
            **cells,
        })
    return rows


# ---------------------------------------------------------------- comparisons


def comparison_row(c: Comparison) -> dict:
    return {
        "variant": c.variant, "metric": metric_label(c.metric), "n": c.n,
        "diff": format_diff(c.diff_mean, c.metric), "ci": format_ci(c.ci_low, c.ci_high, c.metric),
        "relative": format_relative(c.relative_pct),
        "p": fmt_p(c.p_value), "p_holm": fmt_p(c.p_holm), "d_z": fmt_num(c.d_z),
        "wins": f"{c.wins}/{c.n}", "mde": format_diff(c.mde, c.metric, signed=False),
        "verdict": c.verdict, "css": verdict_css(c.verdict),
        "sentence": c.sentence, "warning": c.warning,
        # the interval the verdict was decided on (Holm-adjusted), and the test that decided
        "adj_ci": format_ci(c.adj_low, c.adj_high, c.metric), "test": c.test,
    }


def verdict_css(verdict: str) -> str:
    return {"better": "better", "worse": "worse", "diverged": "diverged"}.get(verdict, "nodiff")


def relative_sentence(acc: Comparison | None, loss: Comparison | None) -> str | None:
    """'ReLU vs LReLU: test accuracy -0.08 pp (-0.09% relative), test loss +0.0012 (+0.35% relative)'.

    The absolute difference first (percentage points for accuracies), then the
    relative change, named as such so it is never read as points.
    """
    parts = [f"{metric_label(c.metric)} {format_diff(c.diff_mean, c.metric)} ({format_relative(c.relative_pct)})"
             for c in (acc, loss) if c is not None and math.isfinite(c.relative_pct)]
    if not parts:
        return None
    c = acc or loss
    return f"{c.variant} vs {c.baseline}: {', '.join(parts)}"


def epoch_sections(results: StudyResults, comparisons: list[Comparison]) -> list[dict]:
    sections = []
    for epoch in results.report_epochs:
        at_epoch = [c for c in comparisons if c.epoch == epoch]
        relative = []
        for variant in results.variants:
            if variant == results.baseline:
                continue
            mine = {c.metric: c for c in at_epoch if c.variant == variant}
            line = relative_sentence(mine.get("test_acc"), mine.get("test_loss"))
            if line:
                relative.append(line)
        sections.append({
            "epoch": epoch, "rows": variant_rows(results, epoch),
            "comparisons": [comparison_row(c) for c in at_epoch], "relative": relative,
            # One line per "no detectable difference" on too few seeds to rule out all but large differences.
            "warnings": [f"{c.variant}, {metric_label(c.metric)}: {c.warning}" for c in at_epoch if c.warning],
            "rule": VERDICT_RULE, "min_seeds": MIN_SEEDS,
        })
    return sections


# ---------------------------------------------------------------- per class


def predictions_by_seed(results: StudyResults, variant: str, epoch: int | None) -> dict[int, np.ndarray]:
    if epoch is None:
        return {}
    return {r.seed: np.asarray(r.predictions[epoch]) for r in results.runs_of(variant)
            if usable(r) and epoch in r.predictions}


def class_section(results: StudyResults, variant: str, epoch: int | None, baseline_preds: dict) -> dict:
    """Mean confusion matrix, classification table, confused pairs and F1 differences of one variant."""
    preds = predictions_by_seed(results, variant, epoch)
    section = {"name": variant, "n": len(preds), "epoch": epoch, "cm": None, "diverged": None}
    if not preds:
        return section
    classes = list(results.classes)
    cms = confusion_by_seed(results.y_true, preds, len(classes))
    section["cm"] = mean_confusion(list(cms.values()))
    table = classification_table(results.y_true, preds, classes)
    section["table"] = [
        {"name": row["name"], "precision": fmt_score(row["precision"]), "recall": fmt_score(row["recall"]),
         "f1": fmt_score(row["f1"]), "support": row["support"]}
        for row in table["classes"]
    ]
    section["accuracy"] = fmt_score(table["accuracy"])
    section["support"] = int(len(results.y_true))
    section["averages"] = [
        {"name": name, "precision": fmt_score(table[name]["precision"]), "recall": fmt_score(table[name]["recall"]),
         "f1": fmt_score(table[name]["f1"]), "support": table[name]["support"]}
        for name in ("macro avg", "weighted avg")
    ]
    section["confused"] = [pair[4] for pair in most_confused_pairs(section["cm"], classes, top=5)]
    section["differences"] = None  # None: not compared (the baseline itself, or no baseline runs)
    if variant != results.baseline:
        section["diverged"] = divergence(results, variant) or divergence(results, results.baseline)
    if variant != results.baseline and baseline_preds and not section["diverged"]:
        diffs = per_class_f1_differences(results.y_true, baseline_preds, preds, classes, variant, results.baseline,
                                         epoch=epoch if epoch is not None else -1)
        section["differences"] = [comparison_row(c) for c in diffs]
    return section


# ---------------------------------------------------------------- header, diagnostics


def dataset_lines(dataset: dict) -> list[tuple[str, str]]:
    lines = []
    for key, label in DATASET_FIELDS:
        value = dataset.get(key)
        if key == "image_shape" and value is None:
            value = dataset.get("shape")
        if value is None:
            continue
        if key == "image_shape" and isinstance(value, (list, tuple)):
            value = " × ".join(str(v) for v in value)
        if key == "fingerprint":
            value = str(value)[:12]
        lines.append((label, str(value)))
    known = {k for k, _ in DATASET_FIELDS} | {"shape", "split_note"}
    lines += [(str(k), str(v)) for k, v in dataset.items() if k not in known]
    return lines


def status_counts(results: StudyResults) -> list[tuple[str, int]]:
    counts = Counter(r.status for r in results.runs)
    started = {(r.variant, r.seed) for r in results.runs}
    not_started = sum((v, s) not in started for v in results.variants for s in results.seeds)
    out = [(s, counts[s]) for s in STATUSES if counts[s]]
    out += [(s, n) for s, n in counts.items() if s not in STATUSES]
    if not_started:
        out.append(("not started", not_started))
    return out


def diagnostics(results: StudyResults) -> dict:
    def last_epoch(r: RunResult) -> str:
        return str(r.history[-1].epoch) if r.history else "—"

    runs = sorted(results.runs, key=lambda r: (results.variants.index(r.variant)
                                              if r.variant in results.variants else 1e9, r.seed))
    return {
        "failed": [{"variant": r.variant, "seed": r.seed, "run_id": r.run_id, "error": r.error or "(no message)"}
                   for r in runs if r.status == "failed"],
        "diverged": [{"variant": r.variant, "seed": r.seed, "run_id": r.run_id,
                      "epoch": r.diverged_at if r.diverged_at is not None else "?"}
                     for r in runs if r.status == "diverged"],
        "unfinished": [{"variant": r.variant, "seed": r.seed, "run_id": r.run_id, "status": r.status,
                        "epoch": last_epoch(r)}
                       for r in runs if r.status in run_status.TO_TRAIN],
    }


def _setting(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def run_settings(results: StudyResults) -> dict:
    """How the runs were trained, from what each run recorded (not from the latest command line).

    Returns
    -------
    dict
        ``same``: [(label, "cpu (all 10 runs)")] for settings every recording
        run shares; ``columns`` and ``rows`` ({"variant", "seeds", "values"}):
        a table of the settings that differ, one row per variant and set of
        values; ``unrecorded``: a note on started runs that recorded nothing
        (trained by an older nnstudy), or None.
    """
    order = {v: i for i, v in enumerate(results.variants)}
    runs = sorted(results.runs, key=lambda r: (order.get(r.variant, len(order)), r.seed))
    recorded = [r for r in runs if r.settings]
    keys = [k for k in SETTING_LABELS if any(k in r.settings for r in recorded)]
    keys += sorted({k for r in recorded for k in r.settings} - set(keys) - set(HIDDEN_SETTINGS))
    values = {k: [_setting(r.settings.get(k)) for r in recorded] for k in keys}
    same_keys = [k for k in keys if len(set(values[k])) == 1]
    differ = [k for k in keys if k not in same_keys]
    silent = [r for r in runs if not r.settings and r.status != "pending"]
    scope = f"all {len(recorded)} runs" if len(recorded) > 1 else "1 run"
    if silent:
        scope += " that recorded it"
    rows: list[dict] = []
    for i, run in enumerate(recorded):
        cells = [values[k][i] for k in differ]
        if rows and rows[-1]["variant"] == run.variant and rows[-1]["values"] == cells:
            rows[-1]["seeds"].append(run.seed)
        else:
            rows.append({"variant": run.variant, "seeds": [run.seed], "values": cells})
    unrecorded = None
    if silent:
        which = ", ".join(f"{r.variant} seed {r.seed}" for r in silent)
        unrecorded = f"{len(silent)} run(s) recorded no settings (trained before runs recorded them): {which}."
    return {
        "same": [(SETTING_LABELS.get(k, k), f"{values[k][0]} ({scope})") for k in same_keys],
        "columns": [SETTING_LABELS.get(k, k) for k in differ],
        "rows": [{**row, "seeds": ", ".join(str(s) for s in row["seeds"])} for row in rows] if differ else [],
        "unrecorded": unrecorded,
    }


def header(results: StudyResults) -> dict:
    return {
        "name": results.name, "description": results.description,
        "dataset": dataset_lines(results.dataset),
        "split_note": results.dataset.get("split_note") or FIXED_SPLIT,
        "settings": run_settings(results),
        "seeds": ", ".join(str(s) for s in results.seeds),
        "baseline": results.baseline, "variants": list(results.variants),
        "overrides": " ".join(results.overrides),
        "report_epochs": ", ".join(str(e) for e in results.report_epochs),
        "classes": len(results.classes),
        "status": status_counts(results),
    }
