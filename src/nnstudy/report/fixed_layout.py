"""Figure margins from the sizes of the texts a figure will hold, measured once before drawing.

Constrained layout finds margins by laying out every tick label and title of every axes, twice, before the
real draw; for a run's confusion matrix (drawn once per run) that was about 40% of its drawing. Where the
texts are known before drawing (class names, axis labels, a title), the renderer measures them in
microseconds, and the margins follow from matplotlib's own spacing (tick length and pad, label pad).
"""

from __future__ import annotations

import math
import textwrap

from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

PAD = 0.08  # inches left clear at the figure's edge
LINE = 1.2  # a line of text is this many times its font size high, as matplotlib sets it


def points(size) -> float:
    """A font size as points (`rcParams` names such as "large" resolved)."""
    return FontProperties(size=size).get_size_in_points()


def _renderer(fig: Figure):
    """The Agg renderer `savefig` will draw `fig` with (at the figure's dpi: text measured in its pixels)."""
    return (fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)).get_renderer()


def text_width(fig: Figure, texts, size) -> float:
    """The widest of `texts` at font size `size`, in inches, as the figure's renderer draws it."""
    renderer = _renderer(fig)
    prop = FontProperties(size=size)
    widths = [renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts if t]
    return max(widths, default=0.0) / fig.dpi


def line_height(size) -> float:
    """One line of text at font size `size`, in inches."""
    return LINE * points(size) / 72


def tick_space(axis: str = "x") -> float:
    """Inches between an axes' edge and its tick labels: tick length and pad."""
    return (rcParams[f"{axis}tick.major.size"] + rcParams[f"{axis}tick.major.pad"]) / 72


def label_space() -> float:
    """Inches an axis label takes beside its tick labels: its line and its pad."""
    return line_height(rcParams["axes.labelsize"]) + rcParams["axes.labelpad"] / 72


def slanted(width: float, height: float, degrees: float = 45) -> float:
    """The height of a `width` x `height` text's box when rotated by `degrees`."""
    a = math.radians(degrees)
    return width * math.sin(a) + height * math.cos(a)


def tick_texts(axis) -> list[str]:
    """The labels `axis` will draw at its major ticks, from its locator and formatter (no layout needed)."""
    params = axis.get_tick_params(which="major")
    if not params.get("labelleft", params.get("labelbottom", True)):  # an inner panel of shared axes
        return []
    axis.axes.autoscale_view()
    low, high = sorted(axis.get_view_interval())
    locs = [v for v in axis.get_majorticklocs() if low <= v <= high]
    formatter = axis.get_major_formatter()
    texts = list(formatter.format_ticks(locs))
    offset = formatter.get_offset() if hasattr(formatter, "get_offset") else ""
    return texts + ([offset] if offset else [])


def _width(fig: Figure, texts: list[str], size) -> float:
    plain = [t for t in texts if "$" not in t]
    # mathtext (a log axis's "10^-2") measured as its characters without the markup: about as wide
    maths = [t.replace("$", "").replace("\\mathdefault", "").replace("{", "").replace("}", "").replace("^", "")
             for t in texts if "$" in t]
    return text_width(fig, plain + maths, size)


def _needs(fig: Figure, ax) -> dict[str, float]:
    """Inches `ax` needs outside its box on each side for its tick labels, axis labels and title."""
    y_texts, x_texts = tick_texts(ax.yaxis), tick_texts(ax.xaxis)
    left = (label_space() if ax.get_ylabel() else 0) + tick_space("y") + _width(fig, y_texts, rcParams["ytick.labelsize"])
    bottom = (label_space() if ax.get_xlabel() else 0) + tick_space("x") + (line_height(rcParams["xtick.labelsize"]) if x_texts else 0)
    title, formatter = ax.get_title(), ax.yaxis.get_major_formatter()
    # A y offset text ("1e-7") stands above the box, and matplotlib lifts the title over it.
    raised = line_height(rcParams["ytick.labelsize"]) if getattr(formatter, "get_offset", str)() else 0.0
    top = raised + ((title.count("\n") + 1) * line_height(ax.title.get_fontsize()) + rcParams["axes.titlepad"] / 72
                    if title else 0.05)
    right = _width(fig, x_texts[-1:], rcParams["xtick.labelsize"]) / 2  # the last x label reaches past the box
    return {"left": left, "bottom": bottom, "top": top, "right": right}


def fit(fig: Figure, grid, top: float = 0.0, bottom: float = 0.0) -> None:
    """Place the axes of `grid` (rows of axes, all of equal size) so that their texts fit in `fig`.

    `top` and `bottom` are inches kept clear above and below the grid (a suptitle, a legend under it).
    Call it once the axes hold their data, labels and titles: their tick labels decide the margins.
    """
    rows = [list(r) for r in grid]
    needs = [[_needs(fig, ax) for ax in row] for row in rows]
    n_rows, n_cols = len(rows), len(rows[0])
    col_left = [max(needs[r][c]["left"] for r in range(n_rows)) for c in range(n_cols)]
    col_right = [max(needs[r][c]["right"] for r in range(n_rows)) for c in range(n_cols)]
    row_top = [max(n["top"] for n in needs[r]) for r in range(n_rows)]
    row_bottom = [max(n["bottom"] for n in needs[r]) for r in range(n_rows)]
    width, height = fig.get_size_inches()
    gap = 0.15  # between neighbouring panels' texts
    free_w = width - 2 * PAD - sum(col_left) - sum(col_right) - gap * (n_cols - 1)
    free_h = height - 2 * PAD - top - bottom - sum(row_top) - sum(row_bottom) - gap * (n_rows - 1)
    w, h = max(free_w / n_cols, 0.3), max(free_h / n_rows, 0.3)
    y = height - PAD - top
    for r, row in enumerate(rows):
        y -= row_top[r] + h
        x = PAD
        for c, ax in enumerate(row):
            x += col_left[c]
            ax.set_position((x / width, y / height, w / width, h / height))
            x += w + col_right[c] + gap
        y -= row_bottom[r] + gap


def suptitle_space(fig: Figure) -> float:
    """Inches a one-line suptitle takes at the top (matplotlib puts it at 98% of the height)."""
    return line_height(rcParams["figure.titlesize"]) + 0.02 * fig.get_size_inches()[1]


def wrap(fig: Figure, text: str, size, width: float) -> str:
    """`text` broken into lines of at most about `width` inches at font size `size` (between words)."""
    wide = text_width(fig, [text], size)
    if wide <= width:
        return text
    return textwrap.fill(text, max(12, int(len(text) * width / wide)))


def figure_legend(fig: Figure, handles, labels: list[str], columns: int):
    """A legend under the figure's panels in at most `columns` columns, as many as fit the figure's width; labels
    too long for one column are wrapped to fit (long variant names)."""
    room = fig.bbox.width - 2 * PAD * fig.dpi
    renderer = _renderer(fig)
    ncols, wrapped = min(columns, len(labels)), False
    while True:
        legend = fig.legend(handles, labels, loc="lower center", ncols=ncols)
        width = legend.get_window_extent(renderer).width
        if width <= room or wrapped:
            return legend
        legend.remove()
        if ncols > 1:
            ncols -= 1
            continue
        size = rcParams["legend.fontsize"]
        widest = text_width(fig, labels, size) * fig.dpi  # the rest of the legend's width: handles and padding
        labels = [wrap(fig, t, size, (room - (width - widest)) / fig.dpi) for t in labels]
        wrapped = True


def legend_height(fig: Figure, legend) -> float:
    """Inches a figure legend takes (laid out once)."""
    return legend.get_window_extent(_renderer(fig)).height / fig.dpi
