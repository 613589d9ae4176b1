"""The verdict labels of claims and exact facts, in one place, with how each is shown.

Every report page, the terminal table and the replication report import
these rather than spell them: a label is a word a reader sees, a tone says
how it is coloured (HTML class "verdict <tone>"), and Markdown and the
terminal show the word itself, which differs for each.

- supported / contradicted / not shown: a statistical claim's verdict.
- holds / does not hold: an exact fact (the same for every seed by the
  architecture's arithmetic: parameters, FLOPs, shapes), counted apart.
- true by construction: a claim whose outcome the code fixes before any
  data (zero weights with zeroed biases get zero gradients); declared in the
  study file (`by_construction = "why"`) and confirmed on every seed. It is
  an illustration, never evidence: counted apart, never as supported.
- not testable: a statement no measurement can show (a derivation, a
  definition), with why.
- diverged: the runs it needs diverged.
"""

from __future__ import annotations

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_SHOWN = "not shown"
HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
BY_CONSTRUCTION = "true by construction"
NOT_TESTABLE = "not testable"
DIVERGED = "diverged"

LABELS = (SUPPORTED, CONTRADICTED, NOT_SHOWN, HOLDS, DOES_NOT_HOLD, BY_CONSTRUCTION, NOT_TESTABLE, DIVERGED)

# How each label is coloured: evidence for ("good") and against ("bad") only for statistical verdicts;
# facts and constructions have looks of their own, so a reader never counts them as evidence.
TONES = {
    SUPPORTED: "good",
    CONTRADICTED: "bad",
    HOLDS: "fact",
    DOES_NOT_HOLD: "fact-bad",
    BY_CONSTRUCTION: "construction",
    NOT_TESTABLE: "neutral",
    NOT_SHOWN: "neutral",
    DIVERGED: "diverged",
}

EVIDENCE = (SUPPORTED, CONTRADICTED)  # the only labels that count as statistical evidence


def tone(verdict: str) -> str:
    """The tone of a verdict; a verdict with words after the label ("not shown at n=5") takes its label's."""
    word = str(verdict).strip().lower()
    for label in sorted(LABELS, key=len, reverse=True):
        if word.startswith(label):
            return TONES[label]
    return "neutral"


__all__ = ["BY_CONSTRUCTION", "CONTRADICTED", "DIVERGED", "DOES_NOT_HOLD", "EVIDENCE", "HOLDS", "LABELS",
           "NOT_SHOWN", "NOT_TESTABLE", "SUPPORTED", "TONES", "tone"]
