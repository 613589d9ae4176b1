"""A claim's record beside its verdict: revised, added or withdrawn after results, reworded, and its first
definition judged again where it can be.

Two sources, joined here: the store's record (store/claim_log.py: first definitions kept once results exist,
the parts that changed in words) and the claim's own declared history (`[claims.history]` in a study file:
the first definition, the first words and why it changed), which makes a built-in claim redefined after
results show as revised in every store, fresh ones included.

A first definition is judged on the runs there are, with the family as first run (Holm over every claim at
its first definition). Where only seeds were added, on its first seeds. Where what it measured is gone (a
compared variant's config changed, so its first runs were replaced, or the metric's code changed version),
it is not judged again, and says why, showing the verdict the store kept from before it changed where
there is one (store/claim_log.keep_first_verdicts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from nnstudy.config.schema import claim_definition, claim_key, declared_first
from nnstudy.registry import CLAIM_METRICS
from nnstudy.store.claim_record import changes as definition_changes
from nnstudy.store.results import StudyResults

NOT_JUDGED = "not judged again"
_GONE = {"configs": "its runs were replaced", "metric_version": "its metric's code changed"}


@dataclass(frozen=True)
class Revision:
    """How one claim stands against its record."""

    key: str
    revised: bool = False
    added_after_results: bool = False
    withdrawn: bool = False
    changes: tuple[str, ...] = ()  # what changed after results, in words
    first_text: str = ""  # the words it was first recorded in, where they differ from its present ones
    first: dict | None = None  # the first definition (claim dict form), when revised or withdrawn
    first_seeds: tuple[int, ...] | None = None  # the seeds it was first defined on, where seeds were added
    not_judged: str = ""  # why the first definition cannot be judged on these runs
    stored_verdict: dict | None = None  # {"verdict", "evidence"} the first definition had, as the store kept it


def revisions(results: StudyResults) -> dict[str, Revision]:
    """Claim key -> its revision, for the study's claims and for those withdrawn after results."""
    history = results.claim_history
    out = {}
    for claim in results.claims:
        key = claim_key(claim)
        out[key] = _revision(key, claim, history.get(key) or {}, claim.get("history"))
    for key, record in history.items():
        if record.get("withdrawn") and key not in out:
            base = {"text": record.get("text") or key, "source": record.get("source", "")}
            out[key] = _revision(key, {**base, **claim_definition(record["first"])}, record, None, withdrawn=True)
    return out


def _revision(key: str, claim: dict, record: dict, declared: dict | None, withdrawn: bool = False) -> Revision:
    told = dict(record.get("changes") or {})
    first = None
    if record.get("first"):
        first = {**claim, **claim_definition(record["first"])}
        if record.get("revised") and not told:  # a record from before the parts were told
            told = definition_changes(claim_definition(record["first"]), claim_definition(claim))
    words = [told[part] for part in told]
    redefined = bool(declared and declared.get("first"))
    added = bool(declared and declared.get("added"))
    if added:
        words.insert(0, f"added after results, as the study file says: {declared['changed']}")
    elif declared and not redefined:  # new words only: a rewording, not a revision
        words.insert(0, f"reworded after results, as the study file says: {declared['changed']}")
    if redefined:
        first = declared_first(claim, declared["first"])
        said = definition_changes(claim_definition(first), claim_definition(claim))
        words.insert(0, f"{'; '.join(said.values()) or 'redefined'} after results, as the study file says: "
                        f"{declared['changed']}")
    first_text = (declared or {}).get("first_text") or record.get("first_text") or ""
    seeds = (record.get("first") or {}).get("seeds")
    added_seeds = "seeds" in told and isinstance(seeds, list) and "seeds" not in record["first"].get("late", [])
    gone = [f"{told[part]}: {why}" for part, why in _GONE.items() if part in told]
    if first is not None and first["metric"].partition("@")[0] not in CLAIM_METRICS:
        gone.append(f"its metric {first['metric']} is no longer known")
    revised = redefined or bool(record.get("revised"))
    return Revision(key=key, revised=revised,
                    added_after_results=added or bool(record.get("added_after_results")), withdrawn=withdrawn,
                    changes=tuple(words), first_text=first_text if first_text != claim["text"] else "",
                    first=first if (revised or withdrawn) else None,
                    first_seeds=tuple(seeds) if added_seeds else None, not_judged="; ".join(gone),
                    stored_verdict=record.get("first_verdict"))


def judge_first(results: StudyResults, found: dict[str, Revision], family: Callable, not_judged: Callable) -> dict:
    """Claim key -> its first definition's result (the family as first run), for every revised or withdrawn claim.

    `family(results_of, claims)` judges claims as one Holm family, each on `results_of(claim)`;
    `not_judged(claim, why, stored)` is the result of a first definition that cannot be judged again (with the
    verdict the store kept for it, if any).
    """
    wanted = [r for r in found.values() if r.first is not None]
    if not wanted:
        return {}
    firsts = {r.key: r.first for r in wanted}
    claims = [firsts.get(claim_key(c), c) for c in results.claims] + [r.first for r in wanted if r.withdrawn]
    keys = [claim_key(c) for c in results.claims] + [r.key for r in wanted if r.withdrawn]
    judgeable = [(k, c) for k, c in zip(keys, claims) if not found[k].not_judged]

    def results_of(claim_index: int) -> StudyResults:
        seeds = found[judgeable[claim_index][0]].first_seeds
        if seeds is None:
            return results
        return dataclasses.replace(results, runs=[r for r in results.runs if r.seed in seeds], seeds=list(seeds))

    judged = dict(zip((k for k, _ in judgeable), family(results_of, [c for _, c in judgeable])))
    return {r.key: judged[r.key] if r.key in judged else not_judged(r.first, r.not_judged, r.stored_verdict)
            for r in wanted}
