"""What a study still does after its last epoch, in seconds, for its time left: each run's figures, drawn on its
job's worker, and the report. Each is a count of figures times the time one figure takes on this machine now,
measured in this study: its sample grid, drawn before any job starts, timed as it is drawn."""

from __future__ import annotations

from dataclasses import dataclass

from nnstudy.registry import PROBES

# The sample grid (up to 32 image tiles in one axes) takes about as long as 0.7 of one of the other figures; a
# report's statistics, pages and index take a few percent beside its figures. Both are ratios of CPU seconds on one
# machine (issue 24, bench/README.md: bench/figure_costs.py); the seconds themselves come from the grid, so a
# slower or busier machine scales them.
GRID_FIGURES = 0.70  # 0.43 until the other figures lost constrained layout (session 22)
REPORT_WORK = 1.0
RUN_FIGURES = 2  # a run folder's curves.png and confusion.png


@dataclass(frozen=True)
class EndCosts:
    run: float = 0.0  # seconds a run adds after its job's last epoch (its figures)
    study: float = 0.0  # seconds the study adds after its last job (its report)


def end_costs(grid_seconds: float, variants: int) -> EndCosts:
    """The end of a study of `variants` variants whose sample grid took `grid_seconds` to draw."""
    figure = max(0.0, grid_seconds) / GRID_FIGURES
    return EndCosts(RUN_FIGURES * figure, REPORT_WORK * report_figures(variants) * figure)


def report_figures(variants: int) -> int:
    """The figures a study's report draws: the curves, the difference from the baseline (two variants or more),
    a confusion matrix per variant and each registered probe's figure (every run records the probes)."""
    probes = sum(PROBES.entry(name).meta.get("figure") is not None for name in PROBES.names())
    return 1 + (variants > 1) + variants + probes
