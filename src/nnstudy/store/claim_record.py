"""What a claim's meaning depends on, and what changed in it since results were first seen.

A claim's definition is more than its own fields (config.schema.CLAIM_DEFINITION): the same words on other
runs claim something else. So the store's record of a claim's first definition also holds the compared
variants' configs (by hash: a change of model, data or training is a change of what is compared), the seeds
(adding seeds until a claim clears is a revision), each compared variant's epochs (shown by name, though the
config hash covers them) and the version of the claim's metric (registry meta `version`, default 1: a metric
whose code changes meaning bumps it). A record from before these parts were kept gains them, once, at its
next save, listed under "late" (what they were when results were first seen is unknown).
"""

from __future__ import annotations

from nnstudy.config.load import variant_hash
from nnstudy.config.schema import CLAIM_DEFINITION
from nnstudy.registry import CLAIM_METRICS

# The parts beyond the claim's own fields, in the order changes are told.
PARTS = ("configs", "epochs", "seeds", "metric_version")


def definition(claim: dict, spec: dict) -> dict:
    """A claim's full definition (dict form) in the study `spec` (a StudyConfig dumped as JSON); parts the spec
    does not hold (a bare spec in a test) are left out."""
    out = {key: claim.get(key) for key in CLAIM_DEFINITION}
    variants = spec.get("variants") or {}
    compared = [name for name in (claim.get("variant"), claim.get("baseline")) if name in variants]
    if compared:
        out["configs"] = {name: variant_hash(variants[name]) for name in compared}
        out["epochs"] = {name: variants[name]["train"]["epochs"] for name in compared}
    if spec.get("sequential"):  # the seeds of each look are the first n of a list fixed with the design
        out["seeds"] = {"looks": list(spec["sequential"]["looks"]), "from": list(spec.get("seeds") or [])[:1]}
    elif spec.get("seeds"):
        out["seeds"] = sorted(spec["seeds"])
    out["metric_version"] = metric_version(claim["metric"])
    return out


def metric_version(metric: str) -> int | None:
    """The claim metric's version (its registry meta `version`, default 1); None for a name no longer known."""
    name = metric.partition("@")[0]
    return int(CLAIM_METRICS.entry(name).meta.get("version", 1)) if name in CLAIM_METRICS else None


def with_late_parts(first: dict, now: dict) -> tuple[dict, list[str]]:
    """An older first definition with the parts it lacks taken from `now`, and the names of those parts."""
    late = [part for part in PARTS if part in now and part not in first]
    if not late:
        return first, []
    return {**first, **{part: now[part] for part in late}, "late": sorted(set(first.get("late", [])) | set(late))}, late


def changes(first: dict, now: dict) -> dict[str, str]:
    """What differs between two definitions, part by part, in words ("seeds": "5 -> 10 seeds")."""
    out = {}
    for key in CLAIM_DEFINITION:
        if key in first and first.get(key) != now.get(key):
            out[key] = f"{key} {_value(first.get(key))} -> {_value(now.get(key))}"
    for part in PARTS:
        if part in first and part in now and first[part] != now[part]:
            out[part] = _part_change(part, first[part], now[part])
    return out


def _part_change(part: str, old, new) -> str:
    if part == "seeds":
        if isinstance(old, list) and isinstance(new, list) and len(old) != len(new):
            return f"seeds {len(old)} -> {len(new)}"
        return f"seeds {_seeds(old)} -> {_seeds(new)}"
    if part == "metric_version":
        return f"metric version {_value(old)} -> {_value(new)}"
    names = sorted(set(old) | set(new))
    if part == "epochs":
        return "; ".join(f"epochs of {n} {_value(old.get(n))} -> {_value(new.get(n))}" for n in names
                         if old.get(n) != new.get(n))
    return "config of " + " and ".join(n for n in names if old.get(n) != new.get(n)) + " changed"


def _seeds(seeds) -> str:
    if isinstance(seeds, dict):
        return f"looks {seeds.get('looks')}"
    return "[" + ", ".join(map(str, seeds)) + "]"


def _value(v) -> str:
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
