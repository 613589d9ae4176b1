"""Build the study report: figures, report.html (self-contained) and report.md.

The report only reads `StudyResults`, so it can be rebuilt at any time, also
in the middle of a study: whatever has finished is shown, the rest is listed
under diagnostics.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from nnstudy.files import write_text
from nnstudy.registry import REPORT_SECTIONS
from nnstudy.stats import compare_study
from nnstudy.store.results import StudyResults

from . import context as ctx
from .figures import confusion_figure, difference_figure, save_png, study_curves_figure
from .findings import checked_claims, few_seeds_note, findings
from .index import write_index

TEMPLATES = Path(__file__).parent / "templates"

# autoescape on for both files: class names, variant names and error messages
# come from users (folder names, study files, exceptions) and must never become
# markup. The Markdown file then drops the escapes it does not need (_plain_markdown).
def _section_template(name: str):
    """A registered section's own template, when its entry carries it (meta `html` / `md`): a section is then
    one registration, with no file in templates/. Read anew at every report (an entry may be registered again)."""
    section, _, kind = name.removesuffix(".j2").rpartition(".")
    if kind in ("html", "md") and section in REPORT_SECTIONS.names():
        source = REPORT_SECTIONS.entry(section).meta.get(kind)
        return None if source is None else (source, None, lambda: False)
    return None


_ENV = jinja2.Environment(
    loader=jinja2.ChoiceLoader([jinja2.FunctionLoader(_section_template), jinja2.FileSystemLoader(TEMPLATES)]),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# A Markdown table cell must not contain "|" or a line break.
_ENV.filters["cell"] = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
# The anchor GitHub and most Markdown viewers give a heading: "Claims checked" -> "claims-checked".
_ENV.filters["md_anchor"] = lambda title: re.sub(r"[^\w\- ]", "", str(title).lower()).replace(" ", "-")


def build_report(results: StudyResults) -> dict[str, Path]:
    """Write the figures, `report.html` and `report.md` into `results.out_dir`, then the
    output folder's `index.html` of every study (when the folder holds a store).

    Returns {"html": path, "md": path} (and "index": path when it was written).
    """
    out = Path(results.out_dir)
    fig_dir = out / "figures"
    epoch = ctx.final_epoch(results)
    comparisons = compare_study(results) if len(results.variants) > 1 else []

    # Per-variant class sections; the baseline's predictions pair with each variant's.
    baseline_preds = ctx.predictions_by_seed(results, results.baseline, epoch)
    classes = [ctx.class_section(results, v, epoch, baseline_preds) for v in results.variants]

    figures = {"curves": None, "samples": None, "difference": None}  # None: not available (yet)
    usable_runs = {v: [r for r in results.runs_of(v) if ctx.usable(r)] for v in results.variants}
    if any(r.history for runs in usable_runs.values() for r in runs):
        figures["curves"] = _figure(save_png(study_curves_figure(usable_runs), fig_dir / "curves.png"), out,
                                    "Loss and accuracy per epoch, mean over seeds with 95% CI band")
        figures["difference"] = _difference_figure(results, usable_runs, fig_dir, out)
    samples = fig_dir / "samples.png"
    if samples.exists():  # written by the runner with sample_grid()
        figures["samples"] = _figure(samples, out, "Sample training images with their class names")
    for i, section in enumerate(classes):
        section["figure"] = None
        if section["cm"] is not None:
            name = f"confusion-{i}-{_slug(section['name'])}.png"
            title = f"{section['name']}: confusion matrix, mean over {section['n']} seed(s), epoch {epoch}"
            fig = confusion_figure(section["cm"], results.classes, title)
            section["figure"] = _figure(save_png(fig, fig_dir / name), out, title)
        section["anchor"] = f"variant-{i}"

    claims = checked_claims(results)  # judged once: for the store's first verdicts and for the findings
    _keep_first_verdicts(results, claims)
    finding_rows = findings(results, comparisons, claims)
    page = {
        "header": ctx.header(results),
        "findings": finding_rows,
        "findings_note": few_seeds_note(finding_rows),
        "overview": ctx.variant_rows(results, epoch),
        "final_epoch": epoch,
        "epochs": ctx.epoch_sections(results, comparisons),
        "classes": classes,
        "figures": figures,
        "diagnostics": ctx.diagnostics(results),
        "sections": _registered_sections(results, fig_dir, out),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        # The output folder's replication report (`nnstudy replication`), when there is one.
        "replication": "../replication.html" if (out.parent / "replication.html").is_file() else None,
    }
    html = write_text(out / "report.html", _ENV.get_template("report.html.j2").render(**page))
    md = write_text(out / "report.md", _plain_markdown(_ENV.get_template("report.md.j2").render(**page)))
    paths = {"html": html, "md": md}
    index = write_index(out.parent)
    if index is not None:
        paths["index"] = index
    return paths


def _keep_first_verdicts(results: StudyResults, claims: list) -> None:
    """Each claim still at its first definition (of `claims`, as `checked_claims` gives them): its verdict, kept in
    the store (when the output folder has one), so that if the claim is redefined later and its runs replaced, its
    first verdict can still be shown."""
    from nnstudy.store.db import DB_NAME, Store

    folder = Path(results.out_dir).parent
    first = {c.key: {"verdict": c.verdict, "evidence": c.evidence} for c in claims
             if not c.revised and not c.withdrawn and c.key}
    if not first or not (folder / DB_NAME).is_file():
        return
    store = Store(folder, create=False)
    try:
        store.keep_first_verdicts(results.name, first)
    finally:
        store.close()


def _difference_figure(results: StudyResults, usable_runs: dict, fig_dir: Path, out: Path) -> dict | None:
    """The figure of the verdict (variant minus baseline over epochs), drawn like the study curves."""
    others = {v: runs for v, runs in usable_runs.items() if v != results.baseline}
    if not others:
        return None
    styles = {v: i for i, v in enumerate(results.variants)}  # each variant's line as in the curves figure
    fig = difference_figure(usable_runs[results.baseline], others, results.baseline, styles)
    if fig is None:
        return None
    return _figure(save_png(fig, fig_dir / "difference.png"), out,
                   f"Test accuracy difference from the baseline {results.baseline} per epoch, paired by seed, "
                   "with its 95% CI band")


# In Markdown, raw HTML can only start with "<" before a letter, "/", "!" or "?", and a
# character reference only as "&name;" or "&#...;": every other escape is noise in the file.
_HARMLESS_LT = re.compile(r"&lt;(?![A-Za-z/!?])")
_HARMLESS_AMP = re.compile(r"&amp;(?!#?\w+;)")


def _plain_markdown(text: str) -> str:
    """Undo the HTML escapes Markdown does not need, so user text reads as typed
    (quotes, "p < 0.05", "a&b") while tags and entities in it stay inert."""
    text = text.replace("&#39;", "'").replace("&#34;", '"').replace("&gt;", ">")
    return _HARMLESS_AMP.sub("&", _HARMLESS_LT.sub("<", text))


def _figure(path: Path, out: Path, title: str) -> dict:
    """A figure as both a relative link (Markdown) and a data URI (HTML, self-contained)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"title": title, "file": path.relative_to(out).as_posix(), "data_uri": f"data:image/png;base64,{data}"}


def _registered_sections(results: StudyResults, fig_dir: Path, out: Path) -> list[dict]:
    """The registry's extra sections (claims, mechanisms, ...) that have something to show."""
    def save(fig, name: str, title: str) -> dict:
        return _figure(save_png(fig, fig_dir / name), out, title)

    sections = []
    for name in REPORT_SECTIONS.names():
        entry = REPORT_SECTIONS.entry(name)
        context = entry.build(results, save)
        if context is not None:
            sections.append({"name": name, "title": entry.meta["title"], "anchor": entry.meta["anchor"], "s": context})
    return sections


def _slug(name: str) -> str:
    """A file-name-safe version of a variant name (the index keeps names unique)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:40] or "variant"
