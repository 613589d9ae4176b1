"""The coursework's own numbers beside ours: E5's relative differences, E6's accuracies, per-class tables and
confusion matrices, each checked against what one run of ours gives (stats/replication.py).

The coursework's numbers are data (`reference-numbers.toml`, transcribed from
it, one run each), read at report time: `--reference-numbers FILE`, else
`../shared/reference-numbers.toml` from the working folder when it exists,
else the copy nnstudy ships. Ours come from the stored built-in studies; a
study not run yet gives no numbers, never an error.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from nnstudy.config.load import tomllib
from nnstudy.errors import UserError
from nnstudy.stats.per_class import confusion
from nnstudy.stats.replication import OneRunCheck, one_run_check, printed_slack, relative_difference_pct
from nnstudy.stats.study import metric_by_seed
from nnstudy.store.results import StudyResults

from .context import predictions_by_seed

REFERENCE_FILE = "reference-numbers.toml"
SHARED_REFERENCE = Path("..") / "shared" / REFERENCE_FILE  # beside the project, relative to the working folder
# E5's numbers: (statement, its table in the file, the study that measures it, the epoch).
E5_PROTOCOLS = (("R5.4", "epoch_1", "mnist-activations", 1), ("R5.5", "epoch_1000", "mnist-activations-1000", 1000))
E5_VARIANTS = ("relu", "leaky-relu")  # ReLU against Leaky ReLU, in percent of Leaky ReLU's value
E5_METRICS = ("train_acc", "train_loss", "test_acc", "test_loss")
E6_STUDY, E6_MODELS = "cifar10-cnn", ("A", "B", "C")
SCORES = ("precision", "recall", "f1")
TWO_DECIMALS = 0.005  # the slack of a number printed with two decimals
FOUR_DECIMALS = 0.00005


def read_reference_numbers(path: str | os.PathLike | None = None) -> tuple[dict, str]:
    """The coursework's numbers and the file they came from (see the module's docstring for which file)."""
    if path is None and SHARED_REFERENCE.is_file():
        path = SHARED_REFERENCE
    try:
        if path is None:
            text, where = resources.files("nnstudy.config").joinpath(REFERENCE_FILE).read_text("utf-8"), \
                f"nnstudy's copy of {REFERENCE_FILE}"
        else:
            text, where = Path(path).read_text(encoding="utf-8"), str(Path(path).resolve())
        return tomllib.loads(text), where
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the coursework's numbers {path}: {exc}; pass --reference-numbers FILE") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}; fix it or pass another --reference-numbers FILE") from exc


def number_row(what: str, check: OneRunCheck, unit: str) -> dict:
    """One number of the coursework beside ours, formatted: `unit` is "acc" (a fraction shown in %), "pct"
    (already percent) or "score" (a fraction, 3 decimals)."""
    def fmt(x: float | None) -> str:
        if x is None or not math.isfinite(x):
            return "—"
        return f"{100 * x:.2f}%" if unit == "acc" else f"{x:+.4f}%" if unit == "pct" else f"{x:.3f}"

    s = check.ours
    ci = f" (95% CI {fmt(s.ci_low)} to {fmt(s.ci_high)})" if math.isfinite(s.ci_low) else ""
    return {"what": what, "theirs": fmt(check.theirs), "ours": (fmt(s.mean) + ci) if s.n else "not run",
            "ours_mean": fmt(s.mean) if s.n else "—",
            "seeds": ", ".join(map(str, check.seeds)), "n": s.n,
            "interval": f"{fmt(check.low)} to {fmt(check.high)}" if math.isfinite(check.low) else "—",
            "inside": None if not check.judged else not check.outside,
            "mean": s.mean, "low": check.low, "high": check.high, "their_value": check.theirs}


def _metric_by_seed(results: StudyResults | None, variant: str, epoch: int, metric: str) -> dict[int, float]:
    return {} if results is None else metric_by_seed(results, variant, metric, epoch)


def e5_numbers(statement: str, studies: dict[str, StudyResults], reference: dict) -> list[dict]:
    """R5.4 / R5.5: ReLU's relative difference from Leaky ReLU, per seed, beside the coursework's one run."""
    for source, table, study, epoch in E5_PROTOCOLS:
        if source != statement:
            continue
        theirs = reference.get("e5", {}).get(table, {})
        results = studies.get(study)
        rows = []
        for metric in E5_METRICS:
            relu, leaky = (_metric_by_seed(results, v, epoch, metric) for v in E5_VARIANTS)
            check = one_run_check(relative_difference_pct(relu, leaky), theirs.get(f"{metric}_rel_pct"), FOUR_DECIMALS)
            rows.append(number_row(f"{study} epoch {epoch}: ReLU vs Leaky ReLU, {metric.replace('_', ' ')} "
                                   "(relative, % of Leaky ReLU's)", check, "pct"))
        return rows
    return []


def e6_accuracy_numbers(studies: dict[str, StudyResults], reference: dict) -> list[dict]:
    """R6.1: each model's test accuracy at the last epoch beside the coursework's one run."""
    results = studies.get(E6_STUDY)
    epoch = _last_epoch(results)
    rows = []
    for model in E6_MODELS:
        theirs = reference.get("e6", {}).get(model, {}).get("test_acc")
        check = one_run_check(_metric_by_seed(results, model, epoch, "test_acc") if epoch else {}, theirs,
                              TWO_DECIMALS)
        rows.append(number_row(f"{model}: test accuracy after {epoch or 5} epochs", check, "acc"))
    return rows


def _last_epoch(results: StudyResults | None) -> int | None:
    return results.report_epochs[-1] if results is not None and results.report_epochs else None


def e6_tables(studies: dict[str, StudyResults], reference: dict) -> list[dict]:
    """E6's per-class precision/recall/F1 of A, B and C and the confusion matrices of B and C (A's is only an
    image in the coursework), the coursework's beside ours; a cell is flagged where the coursework's value,
    with its print's rounding, lies outside what one run of ours gives."""
    results = studies.get(E6_STUDY)
    epoch = _last_epoch(results)
    classes = reference.get("classes", [])
    ours_names = list(results.classes) if results is not None else classes
    if results is not None and len(ours_names) != len(classes):
        return []  # another dataset than the coursework's: nothing to set side by side
    tables = []
    for model in E6_MODELS:
        theirs = reference.get("e6", {}).get(model, {})
        preds = predictions_by_seed(results, model, epoch) if results is not None else {}
        scores = {s: precision_recall_fscore_support(results.y_true, p, labels=list(range(len(classes))),
                                                     zero_division=0)[:3] for s, p in preds.items()}
        rows = []
        for k, name in enumerate(classes):
            cells = {}
            for i, score in enumerate(SCORES):
                given = theirs.get(score)
                check = one_run_check({s: float(v[i][k]) for s, v in scores.items()},
                                      given[k] if given else None, TWO_DECIMALS)
                cells[score] = number_row(score, check, "score")
            rows.append({"class": name if name == ours_names[k] else f"{name} ({ours_names[k]})", **cells})
        table = {"model": model, "rows": rows, "seeds": ", ".join(map(str, sorted(preds))), "epoch": epoch,
                 "flagged": sum(not c["inside"] for r in rows for c in (r[s] for s in SCORES) if c["inside"] is not None),
                 "judged": sum(c["inside"] is not None for r in rows for c in (r[s] for s in SCORES)),
                 "confusion": None}
        if "confusion" in theirs:
            table["confusion"] = _confusion_table(results, preds, np.asarray(theirs["confusion"], dtype=float))
        tables.append(table)
    return tables


def _confusion_table(results: StudyResults | None, preds: dict, theirs: np.ndarray) -> dict:
    """Cell by cell: the coursework's count, our mean count over seeds, and whether theirs lies outside what one
    run of ours gives (its two printed digits allowed for). Ours are per 1000 test images of the true class, as
    the coursework's test set has (a study run on a subset of it scales so)."""
    n = theirs.shape[0]
    support = np.bincount(results.y_true, minlength=n).clip(min=1)[:, None] if preds else None
    ours = {s: confusion(results.y_true, p, n) * (1000 / support) for s, p in preds.items()} if preds else {}
    cells = []
    for i in range(n):
        row = []
        for j in range(n):
            check = one_run_check({s: float(m[i, j]) for s, m in ours.items()}, float(theirs[i, j]),
                                  printed_slack(float(theirs[i, j])))
            row.append({"theirs": int(theirs[i, j]), "ours": f"{check.ours.mean:.0f}" if check.ours.n else "—",
                        "outside": check.outside, "interval": (f"{check.low:.0f} to {check.high:.0f}"
                                                               if math.isfinite(check.low) else "—")})
        cells.append(row)
    flat = [c for r in cells for c in r]
    return {"cells": cells, "flagged": sum(c["outside"] for c in flat), "n": len(ours)}
