"""The output folder's `index.html`: every study in its store, with the answer of each.

A row per study: its runs by status, when it last ran, its headline verdicts
(test accuracy against the baseline at the final epoch, and its claims) and a
link to its report. Rewritten whenever a report is built (a study ran, or
`nnstudy report`), so it is never older than the newest report.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import jinja2

from nnstudy.files import write_text
from nnstudy.store.db import DB_NAME, Store
from nnstudy.store.load import load_results

from .context import STATUSES
from .findings import findings, headline

INDEX = "index.html"

# Autoescaped as the report: study names, descriptions and claims come from users.
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def write_index(out_dir: str | os.PathLike) -> Path | None:
    """Write `<out_dir>/index.html` from the store there; None when `out_dir` holds no store."""
    out = Path(out_dir)
    if not (out / DB_NAME).is_file():
        return None
    store = Store(out, create=False)
    try:
        studies = [study_row(store, counts) for counts in store.study_counts()]
    finally:
        store.close()
    studies.sort(key=lambda s: s["updated"], reverse=True)  # the latest study first
    page = _ENV.get_template("index.html.j2").render(
        studies=studies, folder=str(out.resolve()),
        replication="replication.html" if (out / "replication.html").is_file() else None,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return write_text(out / INDEX, page)


def study_row(store: Store, counts: dict) -> dict:
    """One study's line of the index, from `Store.study_counts()`'s row for it."""
    name = counts["study"]
    row = {"name": name, "updated": counts["updated"], "last_run": _time(counts["updated"]),
           "status": [(s, counts[s]) for s in STATUSES if counts.get(s)], "runs": counts["runs"],
           "description": "", "link": None, "verdicts": [], "claims": [], "record": [], "error": None}
    try:
        results = load_results(store, name)
        rows = headline(findings(results))
    except Exception as exc:  # one unreadable study must not stop the index (nor the run that rebuilds it)
        row["error"] = f"could not read its results: {type(exc).__name__}: {exc}"
        return row
    row["description"] = (results.description or "").strip().split("\n")[0]
    report = Path(results.out_dir) / "report.html"
    if report.is_file():
        row["link"] = quote(Path(os.path.relpath(report, store.out_dir.resolve())).as_posix())
    row["verdicts"] = [r for r in rows if r["kind"] == "comparison"]
    claims = [r for r in rows if r["kind"] == "claim"]
    tally = Counter((r["verdict"], r["tone"]) for r in claims if "withdrawn" not in r.get("record", []))
    row["claims"] = [{"verdict": verdict, "tone": tone, "n": n} for (verdict, tone), n in tally.items()]
    marks = Counter(mark for r in claims for mark in r.get("record", []))
    row["record"] = [f"{marks[m]} {m}" for m in ("revised", "added after results", "withdrawn", "reworded") if marks[m]]
    return row


def _time(stamp: float | None) -> str:
    if not stamp:
        return "—"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
