"""Statistics of a study: pure functions on numbers (no torch, no I/O).

- ``summarize``: mean, spread and t-interval of per-seed values.
- ``compare_paired`` / ``compare_study``: paired tests against the baseline
  (the one evidence rule of ``evidence.py``: the t-test with the spread
  floored at the metric's resolution, ``resolution.py``),
  Holm-adjusted over the study, with a verdict and a sentence
  (``VERDICT_RULE`` says the rule in words); diverged runs are left out or
  decide the verdict "diverged".
- ``minimum_detectable_difference`` / ``recommended_seeds``: what the seeds
  can detect, and how many would be needed.
- per-class tables, confusion matrices and per-class F1 differences.
"""

from .paired import (
    MIN_SEEDS,
    VERDICT_RULE,
    Comparison,
    apply_holm,
    compare_paired,
    holm,
    minimum_detectable_difference,
    paired_p_value,
    recommended_seeds,
)
from .per_class import (
    classification_table,
    confusion_by_seed,
    mean_confusion,
    most_confused_pairs,
    per_class_f1_differences,
)
from .study import compare_study, divergence, diverged_epochs
from .summary import Summary, summarize, t_interval
from .words import format_ci, format_diff, format_p, format_relative, is_fraction, metric_label

__all__ = [
    "MIN_SEEDS",
    "VERDICT_RULE",
    "Comparison",
    "Summary",
    "apply_holm",
    "classification_table",
    "compare_paired",
    "compare_study",
    "confusion_by_seed",
    "divergence",
    "diverged_epochs",
    "format_ci",
    "format_diff",
    "format_p",
    "format_relative",
    "holm",
    "is_fraction",
    "mean_confusion",
    "metric_label",
    "minimum_detectable_difference",
    "most_confused_pairs",
    "paired_p_value",
    "per_class_f1_differences",
    "recommended_seeds",
    "summarize",
    "t_interval",
]
