"""The study report: figures (matplotlib PNGs) and report.html / report.md."""

from .build import build_report
from .figures import run_figure_pngs, sample_grid

__all__ = ["build_report", "run_figure_pngs", "sample_grid"]
