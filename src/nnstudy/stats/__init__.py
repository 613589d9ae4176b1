"""Statistics of a study: pure functions on numbers (no torch, no I/O).

- ``summarize``: mean, spread and t-interval of per-seed values.
- ``compare_paired`` / ``compare_study``: paired t-tests against the baseline,
  Holm-adjusted over the study, with a verdict and a sentence.
- ``minimum_detectable_difference`` / ``recommended_seeds``: what the seeds
  can detect, and how many would be needed.
- per-class tables, confusion matrices and per-class F1 differences.
"""

from .paired import (
    Comparison,
    apply_holm,
    compare_paired,
    compare_study,
    format_diff,
    format_p,
    holm,
    is_fraction,
    metric_label,
    minimum_detectable_difference,
    recommended_seeds,
)
from .per_class import (
    classification_table,
    confusion_by_seed,
    mean_confusion,
    most_confused_pairs,
    per_class_f1_differences,
)
from .summary import Summary, summarize, t_interval

__all__ = [
    "Comparison",
    "Summary",
    "apply_holm",
    "classification_table",
    "compare_paired",
    "compare_study",
    "confusion_by_seed",
    "format_diff",
    "format_p",
    "holm",
    "is_fraction",
    "mean_confusion",
    "metric_label",
    "minimum_detectable_difference",
    "most_confused_pairs",
    "per_class_f1_differences",
    "recommended_seeds",
    "summarize",
    "t_interval",
]
