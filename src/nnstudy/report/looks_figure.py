"""The figure of a study run until decided: each comparison's repeated interval at every look."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from nnstudy.stats.words import is_fraction

from .figures import line_style, plain


def looks_figure(comparisons) -> Figure | None:
    """Estimate and repeated confidence interval per look, one panel per comparison; the band is the smallest
    difference worth knowing (an interval inside it: equivalent), the line at zero the one to exclude."""
    shown = [c for c in comparisons if c.looks]
    if not shown:
        return None
    fig = Figure(figsize=(4.2 * len(shown), 3.4))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for i, (ax, c) in enumerate(zip(axes, shown)):
        scale = 100 if is_fraction(c.metric) else 1
        style = line_style(i, len(shown))
        for look in c.looks:
            low, high = look.ci_low * scale, look.ci_high * scale
            finite = math.isfinite(low) and math.isfinite(high)
            if finite:
                ax.plot([look.n, look.n], [low, high], color=style["color"], linewidth=2)
            ax.plot([look.n], [look.estimate * scale], marker=style["marker"], color=style["color"],
                    linestyle="none")
        ax.axhspan(-c.smallest * scale, c.smallest * scale, color="0.85", zorder=0, label="smallest difference")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks([b.n for b in c.design])
        ax.set_xlabel("seeds at the look")
        ax.set_ylabel(f"{c.variant} - {c.baseline}" + (" (pp)" if scale == 100 else ""))
        ax.set_title(plain(f"{c.variant} vs {c.baseline}: {c.decision}", 40), fontsize=10)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.17, top=0.88, wspace=0.35)
    return fig
