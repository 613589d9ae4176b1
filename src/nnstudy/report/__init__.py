"""The study report: figures (matplotlib PNGs) and report.html / report.md."""

from .build import build_report
from .figures import sample_grid, write_run_figures

__all__ = ["build_report", "sample_grid", "write_run_figures"]
