"""Report sections beyond the core ones, registered by name (registry.REPORT_SECTIONS).

Each entry builds its context from the study's results (`build(results, save)`,
where `save(fig, name, title)` stores a figure and returns it for the page) and
names its templates (`templates/<name>.html.j2` and `.md.j2`); it returns None
when the study has nothing to show there. The report renders them, in
registration order, before the diagnostics.
"""

from __future__ import annotations

import math
from collections import Counter

from nnstudy.registry import REPORT_SECTIONS
from nnstudy.stats.claims import (BY_CONSTRUCTION, CONTRADICTED, DIVERGED, DOES_NOT_HOLD, HOLDS, NOT_SHOWN, SUPPORTED,
                                  check_claims, withdrawn_claims)

from nnstudy.stats.sequential import decision_words, seeds_saved, study_looks
from nnstudy.stats.words import format_ci, format_diff, format_p

from . import probe_figures
from .looks_figure import looks_figure


_CSS = {SUPPORTED: "better", CONTRADICTED: "worse", DIVERGED: "diverged", HOLDS: "fact", DOES_NOT_HOLD: "fact-bad",
        BY_CONSTRUCTION: "construction"}  # facts and constructions look apart from evidence (stats/labels.py)


def _claim_row(c) -> dict:
    if c.own:
        source = "nnstudy's own addition, not in the coursework"
    elif c.quote:
        source = f"{c.source}: \u201c{c.quote}\u201d"
    else:
        source = c.source or "no source given"
    return {"text": c.text, "source": source, "reading": c.reading, "rationale": c.rationale,
            "metric": c.label or c.metric, "kind": c.kind,
            "epoch": "at initialisation" if c.epoch == 0 else f"epoch {c.epoch}",
            "claim": f"{c.metric} of {c.variant} {c.direction} {c.reference}", "evidence": c.evidence,
            "verdict": c.verdict, "css": _CSS.get(c.verdict, "nodiff"),
            "revised": c.revised, "added_after_results": c.added_after_results, "changes": "; ".join(c.changes),
            "first_text": c.first_text,
            "first": None if c.first is None else {
                "claim": f"{c.first.metric} of {c.first.variant} {c.first.direction} {c.first.reference}, "
                         f"{'at initialisation' if c.first.epoch == 0 else f'epoch {c.first.epoch}'}",
                "verdict": c.first.verdict, "css": _CSS.get(c.first.verdict, "nodiff"), "evidence": c.first.evidence}}


def claim_counts(checked, withdrawn=()) -> list[tuple[str, int]]:
    """The section's opening counts: statistical verdicts, then exact facts, then revisions."""
    counts = Counter(c.verdict for c in checked)
    out = [(f"{counts[v]} {v}", counts[v]) for v in (SUPPORTED, CONTRADICTED, NOT_SHOWN, DIVERGED)]
    out += [(f"exact facts: {counts[HOLDS]} hold, {counts[DOES_NOT_HOLD]} do not hold",
             counts[HOLDS] + counts[DOES_NOT_HOLD])]
    out += [(f"{counts[BY_CONSTRUCTION]} true by construction (illustrations, not evidence)", counts[BY_CONSTRUCTION])]
    out += [(f"{sum(c.revised for c in checked)} revised after the results were seen", sum(c.revised for c in checked)),
            (f"{sum(c.added_after_results for c in checked)} added after the results were seen",
             sum(c.added_after_results for c in checked)),
            (f"{len(withdrawn)} withdrawn after the results were seen", len(withdrawn))]
    return out


@REPORT_SECTIONS.register("claims", title="Claims checked", anchor="claims")
def claims_section(results, save) -> dict | None:
    withdrawn = withdrawn_claims(results)
    if not results.claims and not withdrawn:
        return None
    checked = check_claims(results)
    statistical = sum(c.kind == "statistical" for c in checked)
    exact = sum(c.kind == "exact" for c in checked)
    built = len(checked) - statistical - exact
    summary = "; ".join(text for text, n in claim_counts(checked, withdrawn) if n or "revised" in text)
    return {"summary": f"{len(checked)} claims ({statistical} statistical, {exact} exact facts"
                       + (f", {built} declared true by construction" if built else "") + f"): {summary}.", "rows": [_claim_row(c) for c in checked],
            "withdrawn": [_claim_row(c) for c in withdrawn]}


@REPORT_SECTIONS.register("mechanisms", title="Mechanisms", anchor="mechanisms")
def mechanisms_section(results, save) -> dict | None:
    if not any(r.probes for r in results.runs):
        return None
    # Every registered probe with a figure (training/probes.py): a new probe's figure reaches the page too.
    figures = [save(fig, name, title) for name, fig, title in probe_figures.mechanism_figures(results)]
    return {"figures": figures,
            "note": "Probes are measured on a fixed batch of training images (the same for every run), per seed, "
                    "at initialisation and after every epoch; lines are the mean over seeds, bands their range."}


_SPENDING = {"pocock": "Pocock", "obrien-fleming": "O'Brien-Fleming"}


@REPORT_SECTIONS.register("looks", title="Seeds until decided", anchor="looks")
def looks_section(results, save) -> dict | None:
    comparisons = study_looks(results)
    if not comparisons:
        return None
    seq = results.sequential
    figure = looks_figure(comparisons)
    rows = []
    for c in comparisons:
        saved = seeds_saved(c) if c.decision not in ("continue",) else None
        rows.append({"name": f"{c.variant} vs {c.baseline}", "decision": decision_words(c),
                     "css": {"better": "better", "worse": "worse"}.get(c.decision, "nodiff"), "saved": saved,
                     "looks": [{"n": look.n, "estimate": format_diff(look.estimate, c.metric),
                                "interval": format_ci(look.ci_low, look.ci_high, c.metric),
                                "boundary": f"|t| > {look.boundary.critical_t:.3g} (p < {look.boundary.nominal_p:.3g})"
                                if math.isfinite(look.boundary.critical_t) else "no decision possible yet",
                                "p": format_p(look.p_value), "decision": look.decision} for look in c.looks]})
    return {"rows": rows, "figure": save(figure, "looks.png", "Each comparison's estimate and repeated 95% "
                                         "interval at every look; grey: the smallest difference worth knowing")
            if figure is not None else None,
            "design": f"looks at {', '.join(map(str, seq.looks))} seeds, {seq.metric} at the "
                      f"last epoch, smallest difference worth knowing "
                      f"{format_diff(seq.smallest_difference, seq.metric, signed=False)}, "
                      f"{_SPENDING[seq.spending]}-type alpha spending, 5% over the study "
                      f"({comparisons[0].alpha:.3g} per comparison, Bonferroni)"}
