"""The study report: figures (matplotlib PNGs) and report.html / report.md.

Names load on first use, so a worker that only draws its run's figures (report.run_figures) does not
import the report builder, its templates and the statistics (scipy, scikit-learn).
"""

import importlib

_WHERE = {"build_report": ".build", "run_figure_pngs": ".run_figures", "sample_grid": ".samples"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
