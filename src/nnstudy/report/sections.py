"""Report sections beyond the core ones, registered by name (registry.REPORT_SECTIONS).

Each entry builds its context from the study's results (`build(results, save)`,
where `save(fig, name, title)` stores a figure and returns it for the page) and
names its templates (`templates/<name>.html.j2` and `.md.j2`); it returns None
when the study has nothing to show there. The report renders them, in
registration order, before the diagnostics.
"""

from __future__ import annotations

from collections import Counter

from nnstudy.registry import REPORT_SECTIONS
from nnstudy.stats.claims import CONTRADICTED, SUPPORTED, check_claims

from . import probe_figures


@REPORT_SECTIONS.register("claims", title="Claims checked", anchor="claims")
def claims_section(results, save) -> dict | None:
    if not results.claims:
        return None
    checked = check_claims(results)
    counts = Counter(c.verdict for c in checked)
    rows = [{"text": c.text, "source": c.source, "metric": c.label or c.metric,
             "epoch": "at initialisation" if c.epoch == 0 else f"epoch {c.epoch}",
             "claim": f"{c.metric} of {c.variant} {c.direction} {c.reference}", "evidence": c.evidence,
             "verdict": c.verdict, "css": {SUPPORTED: "better", CONTRADICTED: "worse"}.get(c.verdict, "nodiff")}
            for c in checked]
    summary = ", ".join(f"{counts[v]} {v}" for v in (SUPPORTED, CONTRADICTED, "not shown") if counts[v])
    return {"summary": f"{len(checked)} claims: {summary}.", "rows": rows}


@REPORT_SECTIONS.register("mechanisms", title="Mechanisms", anchor="mechanisms")
def mechanisms_section(results, save) -> dict | None:
    if not any(r.probes for r in results.runs):
        return None
    last = results.report_epochs[-1] if results.report_epochs else None
    figures = []
    for name, fig, title in (
        ("grad-norm-depth", probe_figures.depth_figure(results, "grad_norm", "weight-gradient norm"),
         "Norm of the loss gradient per weight layer, input to output: a slope is vanishing or exploding gradients"),
        ("act-std-depth", probe_figures.depth_figure(results, "act_std", "activation std"),
         "Standard deviation of each activation layer's output: flat means the signal keeps its scale"),
        ("dead-units", probe_figures.dead_units_figure(results),
         "Fraction of dead units (never active on the probe batch), mean over activation layers"),
        ("shift", probe_figures.shift_figure(results, last) if last else None,
         f"Test accuracy on shifted test images (a fixed subset), epoch {last}"),
    ):
        if fig is not None:
            figures.append(save(fig, f"{name}.png", title))
    return {"figures": figures,
            "note": "Probes are measured on a fixed batch of training images (the same for every run), per seed, "
                    "at initialisation and after every epoch; lines are the mean over seeds, bands their range."}
