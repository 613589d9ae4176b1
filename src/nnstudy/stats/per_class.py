"""Per-class views of the test predictions, summarised over seeds.

Overall accuracy can hide a design choice that helps most classes and hurts
one. These functions compute sklearn's per-class metrics and confusion
matrices seed by seed, summarise them over seeds, and test per-class F1
differences with the same paired machinery as the headline metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .paired import NO_DIFFERENCE, Comparison, apply_holm, compare_paired
from .summary import summarize


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion matrix of counts (rows: true class, columns: predicted class), scikit-learn's, over every class."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def confusion_by_seed(y_true, predictions_by_seed: Mapping[int, np.ndarray], n_classes: int) -> dict[int, np.ndarray]:
    """Confusion matrix of each seed (rows: true class, columns: predicted class)."""
    return {seed: confusion(y_true, pred, n_classes) for seed, pred in predictions_by_seed.items()}


def mean_confusion(matrices: Sequence[np.ndarray]) -> np.ndarray:
    """Mean count per cell over seeds (a float matrix)."""
    if len(matrices) == 0:
        raise ValueError("mean_confusion needs at least one confusion matrix")
    return np.mean(np.stack([np.asarray(m, dtype=float) for m in matrices]), axis=0)


def classification_table(y_true, predictions_by_seed: Mapping[int, np.ndarray], classes: Sequence[str]) -> dict:
    """Precision, recall and F1 per class, each summarised over seeds.

    With one seed the means equal ``sklearn.metrics.classification_report(
    output_dict=True, zero_division=0)``; with several, each value is a
    ``Summary`` over seeds (mean, spread, t-interval).

    Returns
    -------
    dict
        ``{"classes": [{"name", "precision", "recall", "f1", "support"}, ...],
        "accuracy": Summary, "macro avg": {...}, "weighted avg": {...}}``
        where the averages hold "precision", "recall", "f1" Summaries and the
        total "support".
    """
    y_true = np.asarray(y_true)
    labels = list(range(len(classes)))
    per_class = {key: [] for key in ("precision", "recall", "f1")}
    averages = {avg: {key: [] for key in ("precision", "recall", "f1")} for avg in ("macro", "weighted")}
    accuracy = []
    support = np.zeros(len(classes), dtype=int)
    for pred in predictions_by_seed.values():
        p, r, f, support = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
        for key, value in zip(("precision", "recall", "f1"), (p, r, f)):
            per_class[key].append(value)
        for avg in averages:
            p, r, f, _ = precision_recall_fscore_support(y_true, pred, labels=labels, average=avg,
                                                         zero_division=0)
            for key, value in zip(("precision", "recall", "f1"), (p, r, f)):
                averages[avg][key].append(value)
        accuracy.append(accuracy_score(y_true, pred))

    stacked = {key: np.array(values).reshape(-1, len(classes)) for key, values in per_class.items()}
    rows = [
        {"name": name, **{key: summarize(stacked[key][:, k]) for key in stacked}, "support": int(support[k])}
        for k, name in enumerate(classes)
    ]
    total = int(np.sum(support))
    table = {"classes": rows, "accuracy": summarize(accuracy)}
    for avg, values in averages.items():
        table[f"{avg} avg"] = {**{key: summarize(v) for key, v in values.items()}, "support": total}
    return table


def _format_count(count: float) -> str:
    rounded = round(count, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def most_confused_pairs(mean_cm: np.ndarray, classes: Sequence[str], top: int = 5) -> list[tuple[str, str, float, int, str]]:
    """The largest off-diagonal cells of a (mean) confusion matrix.

    Returns
    -------
    list of (true_name, predicted_name, mean_count, support, sentence)
        Largest first, cells with a zero count left out; ``support`` is the
        number of test images of the true class, and the sentence reads
        "cat is taken for dog in 112 of 1000 cases".
    """
    cm = np.asarray(mean_cm, dtype=float)
    off = cm.copy()
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(-off, axis=None, kind="stable")
    pairs = []
    for index in flat[:top]:
        i, j = np.unravel_index(index, off.shape)
        count = float(off[i, j])
        if count <= 0:
            break
        support = int(round(cm[i].sum()))
        sentence = f"{classes[i]} is taken for {classes[j]} in {_format_count(count)} of {support} cases"
        pairs.append((classes[i], classes[j], count, support, sentence))
    return pairs


def per_class_f1_differences(y_true, base_preds_by_seed: Mapping[int, np.ndarray],
                             var_preds_by_seed: Mapping[int, np.ndarray], classes: Sequence[str],
                             variant_name: str, baseline_name: str, *, epoch: int = -1) -> list[Comparison]:
    """Classes whose F1 differs between variant and baseline beyond seed noise.

    Per class, the F1 scores are paired by seed and compared with
    ``compare_paired`` (metric ``"f1:<class>"``); Holm is applied over the
    classes. Only comparisons with a verdict other than "no detectable
    difference" are returned, in class order. ``epoch`` is only recorded
    (negative: left out of the sentences).
    """
    labels = list(range(len(classes)))

    def f1_by_seed(preds: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        return {seed: f1_score(y_true, pred, labels=labels, average=None, zero_division=0)
                for seed, pred in preds.items()}

    base, var = f1_by_seed(base_preds_by_seed), f1_by_seed(var_preds_by_seed)
    comparisons = [
        compare_paired({s: f[k] for s, f in base.items()}, {s: f[k] for s, f in var.items()},
                       higher_is_better=True, variant_name=variant_name, baseline_name=baseline_name,
                       metric=f"f1:{name}", epoch=epoch)
        for k, name in enumerate(classes)
    ]
    return [c for c in apply_holm(comparisons) if c.verdict != NO_DIFFERENCE]
