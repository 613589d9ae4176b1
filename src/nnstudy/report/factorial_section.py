"""The report's factorial section: main effects and interactions of a grid, with an interaction figure per pair.

One registration (registry.REPORT_SECTIONS) with its templates inline; the numbers come from
stats/factorial.py, which the findings block, `Results.factorial` and `nnstudy show --json` read too.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from matplotlib.figure import Figure

from nnstudy.registry import REPORT_SECTIONS
from nnstudy.stats.factorial import INTERACTION, effect_name, factorial, factors_of, level_text, pair_means, short
from nnstudy.stats.summary import t_interval
from nnstudy.stats.words import format_ci, format_diff, format_p, metric_label

from .figures import line_style, plain
from .fixed_layout import fit

METHOD = ("Each contrast is taken within each seed (the seed's own effect cancels), then tested against zero: a "
          "one-sample t-test (the spread taken as at least the contrast's resolution), Holm over every contrast below; "
          "the interval shown is the one Holm's method decided at. A main effect is a level against "
          "the factor's first level, averaged over the other factors; an interaction is how much one factor's effect "
          "changes between the other factor's first level and another. A factor of more than two levels gives one "
          "contrast per level (against its first). \"detectable\": the smallest effect these seeds detect with 80% "
          "power at 5%, before Holm.")

_MD = """{{ s.method }}


| effect | epoch | n | estimate | Holm-adjusted 95% CI | Holm p | detectable | verdict |
|---|---:|---:|---:|---:|---:|---:|---|
{% for r in s.rows %}
| {{ r.name | cell }} | {{ r.epoch }} | {{ r.n }} | {{ r.estimate }} | {{ r.ci }} | {{ r.p }} | {{ r.mde }} | **{{ r.verdict }}** |
{% endfor %}

{% for r in s.rows if r.kind == "interaction" and r.last %}
- {{ r.sentence | cell }}
{% endfor %}
{% for f in s.figures %}

![{{ f.title }}]({{ f.file }})
{% endfor %}
"""

_HTML = """<p>{{ s.method }}</p>
<div class="scroll"><table>
  <thead><tr><th>effect</th><th>epoch</th><th>n</th><th>estimate</th><th>Holm-adjusted 95% CI</th><th>Holm p</th><th>detectable</th><th>verdict</th></tr></thead>
  <tbody>
  {% for r in s.rows %}
  <tr><td>{{ r.name }}</td><td class="num">{{ r.epoch }}</td><td class="num">{{ r.n }}</td><td class="num">{{ r.estimate }}</td>
    <td class="num">{{ r.ci }}</td><td class="num">{{ r.p }}</td><td class="num">{{ r.mde }}</td><td><span class="verdict {{ r.css }}">{{ r.verdict }}</span></td></tr>
  {% endfor %}
  </tbody>
</table></div>
<ul>{% for r in s.rows if r.kind == "interaction" and r.last %}<li>{{ r.sentence }}</li>{% endfor %}</ul>
{% for f in s.figures %}<figure><img src="{{ f.data_uri }}" alt="{{ f.title }}"><figcaption>{{ f.title }}</figcaption></figure>{% endfor %}
"""

_CSS = {"better": "better", "worse": "worse", INTERACTION: "better"}


@REPORT_SECTIONS.register("factorial", title="Factorial analysis", anchor="factorial", md=_MD, html=_HTML)
def factorial_section(results, save) -> dict | None:
    effects = factorial(results)
    if not effects:
        return None
    last = max(e.epoch for e in effects)
    rows = [{"name": effect_name(e), "kind": e.kind, "epoch": e.epoch, "n": e.n, "last": e.epoch == last,
             "estimate": format_diff(e.estimate, e.metric), "ci": format_ci(e.adj_low, e.adj_high, e.metric),
             "p": format_p(e.p_holm), "mde": format_diff(e.mde, e.metric, signed=False), "verdict": e.verdict,
             "css": _CSS.get(e.verdict, "nodiff"), "sentence": e.sentence} for e in effects]
    figures = []
    for k, (first, second) in enumerate(itertools.combinations(factors_of(results), 2)):
        fig = interaction_figure(results, first, second, "test_acc", last)
        title = (f"{short(second)} by {short(first)}: {metric_label('test_acc')} at epoch {last}, mean over seeds "
                 f"(averaged over any other factors) with 95% CI bands; parallel lines mean no interaction")
        figures.append(save(fig, f"interaction-{k}.png", title))
    return {"method": METHOD, "rows": rows, "figures": figures}


def interaction_figure(results, first: str, second: str, metric: str, epoch: int) -> Figure:
    """x: the levels of `first`; one line per level of `second`; shaded: the 95% t interval of the mean over seeds."""
    factors = factors_of(results)
    means = pair_means(results, first, second, metric, epoch)
    xs = [level_text(v) for v in factors[first]]
    scale = 100 if metric.endswith("_acc") else 1
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for i, b in enumerate(level_text(v) for v in factors[second]):
        points = [means[(a, b)] for a in xs]
        mean = np.array([p.mean() if p.size else math.nan for p in points])
        bands = [t_interval(p.mean(), p.std(ddof=1), p.size) if p.size > 1 else (math.nan, math.nan) for p in points]
        low = np.array([lo if math.isfinite(lo) else m for (lo, _), m in zip(bands, mean)])
        high = np.array([hi if math.isfinite(hi) else m for (_, hi), m in zip(bands, mean)])
        style = line_style(i, len(xs))
        ax.plot(range(len(xs)), scale * mean, label=plain(f"{short(second)} = {b}"), **style)
        top = scale if metric.endswith("_acc") else None  # a t-band can reach past 100%: show the possible part
        ax.fill_between(range(len(xs)), np.clip(scale * low, 0, top), np.clip(scale * high, 0, top),
                        color=style["color"], alpha=0.2, linewidth=0)
    ax.set_xticks(range(len(xs)), [plain(x) for x in xs])
    ax.set_xlabel(short(first))
    ax.set_ylabel(metric_label(metric) + (" (%)" if scale == 100 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fit(fig, [[ax]])
    return fig
