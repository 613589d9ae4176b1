"""A study's findings, the answer first: every verdict at the final epoch, and every claim's.

One source for the three places that show them: the report's opening block,
the short table `nnstudy run` and `nnstudy report` print, and
`nnstudy.Results.findings`. Rows are plain dicts (JSON-ready); the report
adds only markup.
"""

from __future__ import annotations

from nnstudy.registry import REPORT_SECTIONS
from nnstudy.stats.labels import tone
from nnstudy.stats.paired import MIN_SEEDS
from nnstudy.stats.study import compare_study
from nnstudy.stats.words import format_ci, format_diff, metric_label
from nnstudy.store.results import StudyResults

COMPARISON_TONES = {"better": "good", "worse": "bad", "diverged": "diverged"}
CLAIM_WIDTH = 60  # characters of a claim's text in the printed table


class Findings(list):
    """The rows of `findings()`; printed (or shown in a REPL) as the short table."""

    def __str__(self) -> str:
        return format_findings(self)

    __repr__ = __str__


def findings(results: StudyResults, comparisons=None, claims=None) -> Findings:
    """One row per comparison at the final report epoch, then one per claim.

    `comparisons` (from `compare_study`) and `claims` (from `check_claims`)
    may be passed when already computed. A row has: kind ("comparison" or
    "claim"), finding (what is compared or claimed), difference and interval
    (formatted; empty for claims; the interval is the Holm-adjusted one the verdict was decided on, or the
    plain 95% CI where Holm's method changed nothing), test (the test that decided), verdict, tone ("good", "bad", "diverged" or
    "neutral": how to colour it), detail (the sentence or the evidence),
    warning (a comparison's few-seeds warning, or None), source, and section
    and anchor (the report section with the details); a claim's row also has its reading and rationale (why
    its threshold or tolerance is what it is).
    """
    rows = Findings()
    final = results.report_epochs[-1] if results.report_epochs else None
    if comparisons is None:
        comparisons = compare_study(results) if len(results.variants) > 1 else []
    order = {v: i for i, v in enumerate(results.variants)}
    for c in sorted((c for c in comparisons if c.epoch == final), key=lambda c: order.get(c.variant, len(order))):
        rows.append({
            "kind": "comparison", "finding": f"{c.variant} vs {c.baseline}, {metric_label(c.metric)}",
            "variant": c.variant, "metric": c.metric, "epoch": c.epoch,
            "difference": format_diff(c.diff_mean, c.metric), "interval": format_ci(c.adj_low, c.adj_high, c.metric),
            "test": c.test, "verdict": c.verdict, "tone": COMPARISON_TONES.get(c.verdict, "neutral"), "detail": c.sentence,
            "warning": c.warning, "source": "", "section": f"Comparisons at epoch {c.epoch}", "anchor": f"epoch-{c.epoch}",
        })
    rows.extend(_decision_rows(results))
    rows.extend(_factorial_rows(results))
    if claims is None:
        claims = checked_claims(results)
    title, anchor = _claims_section()
    for claim in claims:
        rows.append({
            "kind": "claim", "finding": claim.text, "variant": None, "metric": None, "epoch": None,
            "difference": "", "interval": "", "test": getattr(claim, "test", ""), "verdict": claim.verdict, "tone": claim_tone(claim.verdict),
            "detail": claim.evidence, "warning": None, "source": claim.source, "section": title, "anchor": anchor,
            "reading": getattr(claim, "reading", ""), "rationale": getattr(claim, "rationale", ""),
            **claim_record(claim),
        })
    return rows


def claim_record(claim) -> dict:
    """A claim's record in a findings row: "record" (its marks: revised, added after results, withdrawn,
    reworded), "changes" (what changed after results, in words), "first_text" (its first words, where reworded)
    and "first" (the first definition's verdict and evidence, where revised or withdrawn; else None)."""
    def attr(name, default=False):  # a claim-like object from elsewhere may lack the record's fields
        return getattr(claim, name, default)

    marks = [mark for mark, on in (("withdrawn", attr("withdrawn")), ("revised", attr("revised")),
                                   ("added after results", attr("added_after_results")),
                                   ("reworded", bool(attr("first_text", "")))) if on]
    first = attr("first", None) if attr("revised") else None
    return {"record": marks, "changes": list(attr("changes", ())), "first_text": attr("first_text", ""),
            "first": None if first is None else {"verdict": first.verdict, "tone": claim_tone(first.verdict),
                                                 "evidence": first.evidence}}


def record_lines(rows: list[dict], width: int = CLAIM_WIDTH) -> list[str]:
    """One line per claim with a record: what happened to it after results, and its first definition's verdict."""
    lines = []
    for r in rows:
        if r["kind"] != "claim" or not r.get("record"):
            continue
        said = [", ".join(r["record"])] + r["changes"]
        if r.get("first_text"):
            said.append(f"first worded \u201c{_cut(r['first_text'], width)}\u201d")
        if r.get("first"):
            said.append(f"first definition: {r['first']['verdict']}")
        lines.append(f"{_cut(r['finding'], width)}: " + "; ".join(said))
    return lines


def _decision_rows(results: StudyResults) -> list[dict]:
    """A study run until decided: each comparison's decision at its last look, with the repeated interval."""
    from nnstudy.stats.sequential import decision_words, study_looks

    rows = []
    for c in study_looks(results):
        if not c.looks:
            continue
        look = c.looks[-1]
        rows.append({
            "kind": "comparison", "finding": f"{c.variant} vs {c.baseline}, {metric_label(c.metric)}, until decided "
                                             f"(look {len(c.looks)}, n={look.n})",
            "variant": c.variant, "metric": c.metric, "epoch": results.report_epochs[-1] if results.report_epochs else None,
            "difference": format_diff(look.estimate, c.metric), "interval": format_ci(look.ci_low, look.ci_high, c.metric),
            "test": "group sequential t-test (repeated interval)", "verdict": decision_words(c), "tone": COMPARISON_TONES.get(c.decision, "neutral"),
            "detail": "the repeated 95% interval of a study run until decided", "warning": None, "source": "",
            "section": "Seeds until decided", "anchor": "looks"})
    return rows


def _factorial_rows(results: StudyResults) -> list[dict]:
    """A grid of two or more factors: each main effect and interaction at the final epoch (stats/factorial.py)."""
    from nnstudy.stats.factorial import effect_name, factorial

    effects = factorial(results)
    final = max((e.epoch for e in effects), default=None)
    tones = {"better": "good", "worse": "bad", "interaction": "good"}
    return [{"kind": "factorial", "finding": f"{effect_name(e)}, {metric_label(e.metric)}", "variant": None,
             "metric": e.metric, "epoch": e.epoch, "difference": format_diff(e.estimate, e.metric),
             "interval": format_ci(e.adj_low, e.adj_high, e.metric), "verdict": e.verdict,
             "tone": tones.get(e.verdict, "neutral"), "detail": e.sentence, "warning": None, "source": "",
             "section": "Factorial analysis", "anchor": "factorial"} for e in effects if e.epoch == final]


def claim_tone(verdict: str) -> str:
    """'good' for a supported claim, 'bad' for a contradicted one; facts and constructions have their own look."""
    return tone(verdict)


def few_seeds_note(rows: list[dict]) -> str | None:
    """One line when a comparison's "no detectable difference" rests on too few seeds to mean much."""
    if not any(r["warning"] for r in rows):
        return None
    return (f'Fewer than {MIN_SEEDS} seeds, so "no detectable difference" rules out only large differences; '
            "the comparisons say how large, and how many seeds to run.")


def format_findings(rows: list[dict]) -> str:
    """The findings as a short plain-text table (columns aligned, claims cut to CLAIM_WIDTH)."""
    if not rows:
        return "Findings: none (a single variant and no claims)."
    epochs = sorted({r["epoch"] for r in rows if r["kind"] == "comparison"})
    title = "Findings" + (f" (comparisons at the final epoch, {epochs[0]})" if epochs else "") + ":"
    table = [("finding", "difference", "95% CI (Holm-adjusted)", "verdict")]
    for r in rows:
        finding = f"claim: {_cut(r['finding'], CLAIM_WIDTH)}" if r["kind"] == "claim" else r["finding"]
        marks = f" ({', '.join(r['record'])})" if r.get("record") else ""
        table.append((finding, r["difference"], r["interval"], r["verdict"] + marks))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [title]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[3]]
        lines.append("  " + "  ".join(cells).rstrip())
    note = few_seeds_note(rows)
    if note:
        lines.append(f"  note: {note}")
    record = record_lines(rows)
    if record:
        lines.append("  after the results were seen:")
        lines += [f"    {line}" for line in record]
    return "\n".join(lines)


def headline(rows: list[dict]) -> list[dict]:
    """The rows a one-line summary shows: test accuracy comparisons and every claim."""
    return [r for r in rows if r["kind"] == "claim" or r["metric"] == "test_acc"]


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def checked_claims(results: StudyResults) -> list:
    """The study's claims, then those withdrawn after results (judged by their first definitions)."""
    if not results.claims and not any(h.get("withdrawn") for h in results.claim_history.values()):
        return []
    from nnstudy.stats.claims import check_claims, withdrawn_claims

    return check_claims(results) + withdrawn_claims(results)


def _claims_section() -> tuple[str, str]:
    """Title and anchor of the report section that details the claims."""
    if "claims" in REPORT_SECTIONS:
        meta = REPORT_SECTIONS.entry("claims").meta
        return meta.get("title", "Claims checked"), meta.get("anchor", "claims")
    return "Claims checked", "claims"
