"""The replication report: the coursework, statement by statement (R2.1-R6.5), against what the studies show.

One page, answer first: how many statements the data reproduce, contradict,
do not show either way, cannot test, or have not been run yet. Then each
exercise, each statement with the coursework's words, its numbers where it
gave any beside ours (mean and 95% CI over seeds, the seeds, and whether its
one-run number lies in our 95% prediction interval for one run), the verdict
of every claim that tests it (from each stored study's claims), and where our
protocol differs from or guesses at the coursework's. Read only from the
store in the output folder: rebuilt at any time, a study not run yet shows
"not run" rows.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from nnstudy.config.reference import MOST, NOT_TESTED, PARTS_NOT_TESTED, STATEMENTS
from nnstudy.files import write_text
from nnstudy.stats import labels
from nnstudy.stats.claims import check_claims
from nnstudy.store.db import DB_NAME, Store
from nnstudy.store.load import load_results

from . import replication_numbers as numbers

HTML, MARKDOWN = "replication.html", "replication.md"
REPRODUCED, CONTRADICTED, NOT_SHOWN, NOT_TESTABLE, NOT_RUN = (
    "reproduced", "contradicted", "not shown", "not testable", "not run")
# A claim the code decides before any data (zero weights get zero gradients) illustrates a statement and never
# supports it: its own outcome, counted apart, so a statement tested only by constructions is never "reproduced".
ILLUSTRATION = "true by construction (illustration)"
# A claim that holds as an exact fact (pooling shrinks the map: the architecture's arithmetic, the same on every seed)
# is true, but not statistical evidence that the coursework's finding reproduces: its own outcome, counted apart.
# A fact that does not hold still contradicts the statement (its words are wrong by the arithmetic).
FACT = "exact fact (holds)"
APART = (FACT, ILLUSTRATION)  # claim outcomes that never decide a statement beside statistical evidence
# A statement with two fair readings, one borne out and one contradicted: neither reading may decide the row.
READINGS_DISAGREE = "readings disagree"
OUTCOMES = (REPRODUCED, CONTRADICTED, READINGS_DISAGREE, NOT_SHOWN, FACT, ILLUSTRATION, NOT_TESTABLE, NOT_RUN)

# Each exercise: its title, the built-in studies that test it, and how our protocol stands to the coursework's.
EXERCISES = {
    "E2": ("Initialisation and symmetry breaking", ["mnist-init"],
           "The coursework gives advice, no experiment: ours is mnist-init, an MLP 784-256-128-10 on MNIST with "
           "seven initialisations, SGD lr 0.01 momentum 0.9, batch 64, 5 epochs, 10 seeds."),
    "E3": ("Pooling", ["cifar10-pooling"],
           "The coursework names max, min, L2 and average pooling but gives no network, data or numbers: ours is "
           "cifar10-pooling, its network A on CIFAR-10 (a JPEG copy), SGD lr 0.01 momentum 0.9, batch 64, 10 "
           "epochs, 5 seeds."),
    "E4": ("Loss functions", ["mnist-loss"],
           "No experiment given: ours is mnist-loss, an MLP on MNIST, cross-entropy against MSE (on logits and on "
           "softmax) and a margin loss, SGD lr 0.01 momentum 0.9, batch 64, 5 epochs, 5 seeds."),
    "E5": ("ReLU and Leaky ReLU on MNIST", ["mnist-activations"],
           "The coursework does not give its network, optimiser or batch size: ours are a guess (an MLP "
           "784-256-128-10, SGD lr 0.01 momentum 0.9, batch 64, Leaky ReLU slope 0.01). Its numbers are one run "
           "each, ours 5 seeds; mnist-activations runs 10 epochs, mnist-activations-1000 the coursework's 1000."),
    "E6": ("Three CNNs on CIFAR-10", ["cifar10-cnn"],
           "As the coursework: networks A, B and C, SGD lr 0.001 momentum 0.9, batch 4, 5 epochs, cross-entropy. "
           "C's hidden layers after 1080 inputs are not given (ours 120 and 84, as A's); our CIFAR-10 is a JPEG "
           "re-encoding (accuracies may differ by a point); 5 seeds against its one run."),
}
# The coursework's one-run numbers (R5.4, R5.5, R6.1's levels, R6.5's tables) are set beside ours, but no claim
# tests them: said in their rows, so a reader does not take an "inside"/"outside" for a verdict.
COMPARED = ("its numbers are compared against our single-run prediction interval; not a claim, not counted in the "
            "outcome")
TABLES = {"R6.5"}  # statements whose numbers are the per-class tables below the statements, not a row's table
STUDIES_OF = {"R5.5": ["mnist-activations-1000"]}  # statements tested by other studies than their exercise's


def outcome_of(verdict: str) -> str:
    """A claim's verdict as the statement's outcome: the one place that reads the claims' labels. Known labels
    (supported; holds; contradicted, does not hold; true by construction; not shown, not testable) map to an
    outcome; any other label (diverged, or one added later) counts as not shown, and is shown verbatim. Only
    statistical support reproduces: an exact fact that holds and a construction each have an outcome of their own."""
    label = verdict.strip().lower()
    if label == labels.SUPPORTED:
        return REPRODUCED
    if label == labels.HOLDS:
        return FACT
    if label == labels.BY_CONSTRUCTION:
        return ILLUSTRATION
    if label in (labels.CONTRADICTED, labels.DOES_NOT_HOLD):
        return CONTRADICTED
    if label.startswith(labels.NOT_TESTABLE):
        return NOT_TESTABLE
    return NOT_SHOWN


def replication_rows(out: str | os.PathLike, reference_numbers: str | os.PathLike | None = None) -> list[dict]:
    """One row per coursework statement, R2.1 to R6.5 in order (see `write_replication` for the page)."""
    return _rows(*_stored(Path(out)), numbers.read_reference_numbers(reference_numbers)[0])[0]


def _stored(out: Path) -> tuple[dict, dict]:
    """Every stored study's results and checked claims (a study that cannot be read is left out, said in the
    row); no store: nothing run."""
    studies, claims = {}, {}
    if not (out / DB_NAME).is_file():
        return studies, claims
    store = Store(out, create=False)
    try:
        for row in store.study_counts():
            try:
                studies[row["study"]] = load_results(store, row["study"])
                claims[row["study"]] = check_claims(studies[row["study"]])
            except Exception:  # one unreadable study must not stop the page; its rows say "not run"
                studies.pop(row["study"], None)
    finally:
        store.close()
    return studies, claims


def _rows(studies: dict, claims: dict, reference: dict) -> tuple[list[dict], list[dict]]:
    rows = []
    for sid, words in STATEMENTS.items():
        exercise = "E" + sid[1]
        expected = STUDIES_OF.get(sid, EXERCISES[exercise][1])
        tested = [{"study": name, "text": c.text, "reading": c.reading, "verdict": c.verdict,
                   "outcome": outcome_of(c.verdict), "evidence": c.evidence}
                  for name, checked in claims.items() for c in checked if c.source == sid]
        row = {"id": sid, "exercise": exercise, "words": words, "claims": tested, "studies": expected,
               "numbers": _numbers(sid, studies, reference), "untested_part": PARTS_NOT_TESTED.get(sid, ""),
               "compared": COMPARED if sid in TABLES or sid in _NUMBERED else "",
               "protocol": EXERCISES[exercise][2] if sid.endswith(".1") or sid in STUDIES_OF else ""}
        row["outcome"], row["why"] = _outcome(sid, tested, [s for s in expected if s in studies])
        rows.append(row)
    return rows, numbers.e6_tables(studies, reference)


_NUMBERED = ("R5.4", "R5.5", "R6.1")  # statements whose one-run numbers `_numbers` sets beside ours


def _numbers(sid: str, studies: dict, reference: dict) -> list[dict]:
    if sid in ("R5.4", "R5.5"):
        return numbers.e5_numbers(sid, studies, reference)
    if sid == "R6.1":
        return numbers.e6_accuracy_numbers(studies, reference)
    return []


def _outcome(sid: str, tested: list[dict], run: list[str]) -> tuple[str, str]:
    """The statement's outcome from its claims' outcomes, and why, in a few words. Statistical evidence decides;
    exact facts that hold and constructions are named apart, and decide only a statement that has nothing else
    (facts before constructions: a fact is measured on the runs, a construction is fixed by the code)."""
    if sid in NOT_TESTED:
        return NOT_TESTABLE, NOT_TESTED[sid]
    if not tested:
        return (NOT_SHOWN, "no claim of the stored studies tests it") if run else (NOT_RUN, "its study has not run")
    facts = sum(t["outcome"] == FACT for t in tested)
    illustrations = sum(t["outcome"] == ILLUSTRATION for t in tested)
    evidence = [t for t in tested if t["outcome"] not in APART]
    outcomes = [t["outcome"] for t in evidence]
    apart = _apart(facts, illustrations, more=bool(evidence))
    n = len(outcomes)
    if not outcomes:
        if facts:
            return FACT, f"its {facts} claim(s) hold as exact facts: the same on every seed, not statistical evidence" + apart
        return ILLUSTRATION, f"its {illustrations} claim(s) are true by construction: the code decides them, no data"
    if sid in MOST:
        return _most(outcomes, MOST[sid], apart)
    if _readings_disagree(evidence):
        return READINGS_DISAGREE, (f"{outcomes.count(REPRODUCED)} supported and {outcomes.count(CONTRADICTED)} "
                                   f"contradicted of its {n} claim(s), under different readings of its words" + apart)
    if CONTRADICTED in outcomes:
        return CONTRADICTED, f"{outcomes.count(CONTRADICTED)} of its {n} claim(s) contradicted" + (
            f", {outcomes.count(REPRODUCED)} supported" if REPRODUCED in outcomes else "") + apart
    if all(o == REPRODUCED for o in outcomes):
        return REPRODUCED, f"all {n} claim(s) supported" + apart
    return NOT_SHOWN, (f"{outcomes.count(REPRODUCED)} of its {n} claim(s) supported, the rest not shown either way"
                       + apart)


def _most(outcomes: list[str], rule: str, apart: str) -> tuple[str, str]:
    """A statement about most of its cases (config/reference.MOST): decided by the share of its claims, by its rule."""
    n, supported, contradicted = len(outcomes), outcomes.count(REPRODUCED), outcomes.count(CONTRADICTED)
    counted = f"{supported} supported, {contradicted} contradicted of its {n} claim(s), by the rule {rule}" + apart
    if supported > n / 2:
        return REPRODUCED, counted
    return (CONTRADICTED if contradicted >= n / 2 else NOT_SHOWN), counted


def _apart(facts: int, illustrations: int, more: bool) -> str:
    """The claims counted apart from the evidence, in words: " (2 more exact fact(s) that hold, ...)"."""
    parts = ([f"{facts} more exact fact(s) that hold, not evidence"] if facts and more else []) + (
        [f"{illustrations} more true by construction, an illustration only"] if illustrations else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _readings_disagree(tested: list[dict]) -> bool:
    """Some claim supported and some contradicted, each under a reading none of the other side shares."""
    read = {o: {t["reading"] for t in tested if t["outcome"] == o} for o in (REPRODUCED, CONTRADICTED)}
    return bool(read[REPRODUCED]) and bool(read[CONTRADICTED]) and not (read[REPRODUCED] & read[CONTRADICTED])


def write_replication(out: str | os.PathLike, reference_numbers: str | os.PathLike | None = None,
                      create: bool = True) -> dict:
    """Write `<out>/replication.html` and `.md` from the store in `out`; returns their paths, the rows, the
    counts and the answer in one sentence. `create` False: `out` must exist (a mistyped --out is an error)."""
    from nnstudy.errors import UserError

    out = Path(out)
    if not create and not out.is_dir():
        raise UserError(f"--out {out}: no such folder; pass the folder that holds the studies' store")
    reference, where = numbers.read_reference_numbers(reference_numbers)
    studies, claims = _stored(out)
    rows, tables = _rows(studies, claims, reference)
    counts = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    judged = [n for r in rows for n in r["numbers"] if n["inside"] is not None]
    answer = (f"Of the coursework's {len(rows)} statements, " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
              + f"; {sum(not n['inside'] for n in judged)} of its {len(judged)} one-run numbers checked lie outside "
                "what one run of ours gives (95% prediction interval).")
    page = {"rows": rows, "tables": tables, "counts": counts, "answer": answer, "reference": where,
            "exercises": {e: {"title": t, "studies": s} for e, (t, s, _) in EXERCISES.items()},
            "stored": sorted(studies), "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "links": {name: _link(out, r) for name, r in studies.items()}}
    out.mkdir(parents=True, exist_ok=True)
    from .build import _ENV, _plain_markdown  # the study reports' templates: the same escaping and filters
    from .index import write_index

    html = write_text(out / HTML, _ENV.get_template("replication.html.j2").render(**page))
    md = write_text(out / MARKDOWN, _plain_markdown(_ENV.get_template("replication.md.j2").render(**page)))

    write_index(out)
    return {"html": html, "md": md, "rows": rows, "tables": tables, "counts": counts, "answer": answer}


def _link(out: Path, results) -> str:
    """A stored study's report (written at the end of its every run; a suite writes it just after this page)."""
    return Path(os.path.relpath(Path(results.out_dir) / "report.html", out.resolve())).as_posix()
