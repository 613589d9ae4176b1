"""The store's claims table: each claim's first definition, append-only once its study has results.

A row per claim key (`config.schema.claim_key`: its `id`, else its text; the column is still named `text`, as
in stores from before ids, whose rows keep working). Before any result exists a claim may change freely:
nothing was seen yet. Once the study has results ("seen" is sticky: `studies.results_seen`, never cleared by
`--force`, an interrupted rerun or dropped runs), no save overwrites a first definition or deletes a row:

- a change to any part of the definition (store/claim_record.py) marks the claim revised, for good, and the
  parts that changed are kept in words against the first definition ("seeds 5 -> 10"), the latest of each;
  a part changed and changed back stays on record;
- a claim new to the study is marked added after results;
- a claim missing from the study is marked withdrawn (and unmarked when it comes back);
- a rewording keeps the row (its key is its id) and records the current words beside the first ones.

Each claim's verdict at its first definition is kept too (`keep_first_verdicts`, from each report): updated
while the claim is unrevised (the first definition judged on its latest runs), frozen from the moment it is
revised or withdrawn, so a first definition whose runs are gone still shows the verdict it had.
"""

from __future__ import annotations

import json
import sqlite3

from nnstudy.config.schema import claim_key

from .claim_record import changes, definition, with_late_parts

COLUMNS = (("withdrawn", "INTEGER NOT NULL DEFAULT 0"), ("source", "TEXT NOT NULL DEFAULT ''"),
           ("first_text", "TEXT NOT NULL DEFAULT ''"), ("wording", "TEXT NOT NULL DEFAULT ''"),
           ("changes", "TEXT NOT NULL DEFAULT '{}'"), ("first_verdict", "TEXT NOT NULL DEFAULT ''"))


def add_missing_columns(c: sqlite3.Connection) -> None:
    """Older stores gain the columns added since; rows keyed by text keep their text as first and current words."""
    have = {r[1] for r in c.execute("PRAGMA table_info(claims)")}
    for column, kind in COLUMNS:
        if column not in have:
            c.execute(f"ALTER TABLE claims ADD COLUMN {column} {kind}")
    c.execute("UPDATE claims SET first_text=text WHERE first_text=''")
    c.execute("UPDATE claims SET wording=text WHERE wording=''")


def keep_definitions(c: sqlite3.Connection, study: str, spec: dict, now: float) -> None:
    """Record the study's claims (`spec["claims"]`, dict form) against their first definitions."""
    seen = bool((c.execute("SELECT results_seen FROM studies WHERE name=?", (study,)).fetchone() or [0])[0]) or \
        c.execute("SELECT 1 FROM epochs JOIN runs ON epochs.run = runs.id WHERE runs.study=? LIMIT 1",
                  (study,)).fetchone() is not None
    claims = spec.get("claims", [])
    for claim in claims:
        key, text = claim_key(claim), claim["text"]
        current = definition(claim, spec)
        row = _row(c, study, key)
        # An id given to a claim stored by its text (its current words, or the first words its history declares):
        # the row is the claim's, re-keyed.
        stored_as = None
        if row is None and key != text:
            stored_as = next((old for old in (text, (claim.get("history") or {}).get("first_text"))
                              if old and _row(c, study, old) is not None), None)
        if stored_as is not None:
            c.execute("UPDATE claims SET text=? WHERE study=? AND text=?", (key, study, stored_as))
            row = _row(c, study, key)
        if row is None:
            c.execute("INSERT INTO claims (study, text, first, recorded, added_after_results, source, first_text, "
                      "wording) VALUES (?,?,?,?,?,?,?,?)", (study, key, _dump(current), now, int(seen),
                                                            claim.get("source", ""), text, text))
        elif not seen:  # nothing seen yet: the claim as it stands is its first definition
            c.execute("UPDATE claims SET first=?, recorded=?, first_text=?, wording=? WHERE study=? AND text=?",
                      (_dump(current), now, text, text, study, key))
        else:
            first, late = with_late_parts(json.loads(row["first"]), current)
            told = json.loads(row["changes"] or "{}")
            told.update(changes(first, current))
            c.execute("UPDATE claims SET first=?, changes=?, revised=?, wording=? WHERE study=? AND text=?",
                      (_dump(first) if late else row["first"], _dump(told), int(bool(row["revised"] or told)), text,
                       study, key))
    keys = [claim_key(claim) for claim in claims]
    marks = ",".join("?" * len(keys))
    c.execute(f"UPDATE claims SET withdrawn=0 WHERE study=? AND text IN ({marks})", (study, *keys))
    if seen:  # a claim dropped once results exist stays on record, with its first definition
        c.execute(f"UPDATE claims SET withdrawn=1 WHERE study=? AND text NOT IN ({marks})", (study, *keys))
    else:
        c.execute(f"DELETE FROM claims WHERE study=? AND text NOT IN ({marks})", (study, *keys))


def keep_first_verdicts(c: sqlite3.Connection, study: str, verdicts: dict[str, dict]) -> None:
    """Claim key -> {"verdict", "evidence"} of claims judged at their first definition: kept for claims not revised
    or withdrawn (a revised claim's row is never written again); a store without the column is left as it is."""
    if "first_verdict" not in {r[1] for r in c.execute("PRAGMA table_info(claims)")}:
        return  # opened without migrating (read-only): nothing to keep it in
    for key, verdict in verdicts.items():
        c.execute("UPDATE claims SET first_verdict=? WHERE study=? AND text=? AND revised=0 AND withdrawn=0",
                  (_dump(verdict), study, key))


def history(c: sqlite3.Connection, study: str) -> dict[str, dict]:
    """Claim key -> {"first": first definition, "revised", "added_after_results", "withdrawn": bool, "source",
    "changes": {part: words}, "first_text", "text": the current (or last) words}."""
    if c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='claims'").fetchone() is None:
        return {}  # a store from before claims were kept, opened read-only: nothing recorded yet
    out = {}
    for r in c.execute("SELECT * FROM claims WHERE study=? ORDER BY rowid", (study,)).fetchall():
        keys = r.keys()
        out[r["text"]] = {"first": json.loads(r["first"]), "revised": bool(r["revised"]),
                          "added_after_results": bool(r["added_after_results"]), "withdrawn": bool(r["withdrawn"]),
                          "source": r["source"], "changes": json.loads(r["changes"]) if "changes" in keys else {},
                          "first_text": (r["first_text"] if "first_text" in keys else "") or r["text"],
                          "first_verdict": json.loads(r["first_verdict"]) if "first_verdict" in keys and
                          r["first_verdict"] else None,
                          "text": (r["wording"] if "wording" in keys else "") or r["text"]}
    return out


def _row(c: sqlite3.Connection, study: str, key: str):
    return c.execute("SELECT * FROM claims WHERE study=? AND text=?", (study, key)).fetchone()


def _dump(value) -> str:
    return json.dumps(value, sort_keys=True)
