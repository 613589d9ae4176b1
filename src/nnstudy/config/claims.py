"""A claim's schema: what a study states it expects, what it compares, and its declared history.

Validated at the edge like the rest of the study file (config/schema.py holds the study and reads these).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from nnstudy.config.reference import STATEMENTS, is_reference
from nnstudy.config.strict import _registered, _Strict
from nnstudy.registry import CLAIM_METRICS

# The fields that define what a claim tests: a change to any, once its study has results, is a revision.
CLAIM_DEFINITION = ("metric", "variant", "effect", "baseline", "value", "direction", "tolerance", "epoch", "threshold")


def claim_definition(claim: dict) -> dict:
    """What a claim tests (not how it is worded or cited), from its dict form."""
    return {key: claim.get(key) for key in CLAIM_DEFINITION}


def claim_key(claim: dict) -> str:
    """A claim's identity in the store: its `id`, else its text (stores from before ids are keyed by text)."""
    return claim.get("id") or claim["text"]


def declared_first(claim: dict, first: dict) -> dict:
    """A claim (dict form) as its declared first definition: `first`'s fields over its own; a first definition
    against a fixed value drops the current baseline, and the other way round."""
    out = {**claim, **first}
    for one, other in (("value", "baseline"), ("baseline", "value")):
        if first.get(one) is not None and other not in first:
            out[other] = None
    return out


class EffectConfig(_Strict):
    """A factorial contrast of a grid that a claim can name (stats/factorial.py computes it per seed).

    A main effect: `factor`'s `level` against `reference` (the factor's first level when left out), averaged
    over the other factors' levels. With `by`: an interaction, how that effect changes between `by`'s
    `by_reference` (its first level when left out) and `by_level`.
    """

    factor: str  # a grid setting path, e.g. "model.init"
    level: Any
    reference: Any = None
    by: Optional[str] = None
    by_level: Any = None
    by_reference: Any = None

    @model_validator(mode="after")
    def _pair(self):
        if (self.by is None) != (self.by_level is None):
            raise ValueError("an interaction names both by (the other factor) and by_level; a main effect neither")
        if self.by is not None and self.by == self.factor:
            raise ValueError(f"effect.by = {self.by!r} is the effect's own factor; name another grid setting")
        return self


class ClaimHistoryConfig(_Strict):
    """A claim's own account of a change made after results (a built-in study's, say): its `first` definition
    (the fields of CLAIM_DEFINITION that differed; the others are the claim's own), the words it was `first_text`
    worded in, where they differed, and why it `changed`. Every store then shows the claim revised, fresh
    ones included, with that first definition judged beside the current one. With no `first` (only
    `first_text`), it declares a rewording: shown as reworded, not revised, as the definition is the same.
    `added = true` declares the claim added after results (`changed` says when and why): every store then
    marks it so, as a store that held the results before it would."""

    first: dict[str, Any] = Field(default_factory=dict)
    changed: str = Field(min_length=1)
    first_text: str = ""
    added: bool = False

    @model_validator(mode="after")
    def _something_changed(self):
        if not self.first and not self.first_text and not self.added:
            raise ValueError("history needs first (the first definition's fields that differ), first_text (the "
                             "first words) or added = true (added after results)")
        if self.added and (self.first or self.first_text):
            raise ValueError("history.added: a claim added after results has no earlier definition or words; "
                             "drop first and first_text, or added")
        return self

    @field_validator("first")
    @classmethod
    def _definition_fields(cls, v):
        unknown = sorted(set(v) - set(CLAIM_DEFINITION))
        if unknown:
            raise ValueError(f"history.first names {', '.join(unknown)}, not part of a claim's definition; use "
                             f"{', '.join(CLAIM_DEFINITION)}")
        return v


class ClaimConfig(_Strict):
    """A claim the study checks: `metric` of `variant` is greater than, less than, or within
    `tolerance` of the `baseline` variant's (paired by seed) or of a fixed `value`, at `epoch`.

    `source` names where it comes from: a reference coursework statement ("R4.2", see
    config/reference.py), "nnstudy" for nnstudy's own addition, or any text of the user's.
    `reading` says which reading of the statement the claim tests, where it has more than one;
    `rationale` why a fixed value, threshold or tolerance is what it is (set before the results);
    `by_construction` why its outcome is fixed by the code before any data, where it is.
    Instead of a variant, a claim on a grid may name a main effect or an interaction (`effect`), compared
    with a fixed `value` (0 when left out): "Xavier's gain is larger with sigmoid than with ReLU".
    """

    text: str = Field(min_length=1)  # the claim in words; its identity in the store unless `id` is given
    # A stable identity (e.g. "R2.6-xavier"): a claim reworded later keeps its link to its record.
    id: Optional[str] = Field(None, min_length=1)
    source: str = ""
    reading: str = ""
    rationale: str = ""
    metric: str  # registry.CLAIM_METRICS; some take "@arg", e.g. "shift_agreement@2", "class_recall@cat"
    variant: Optional[str] = None
    effect: Optional[EffectConfig] = None
    baseline: Optional[str] = None
    value: Optional[float] = None
    direction: Literal["greater", "less", "within"]
    tolerance: float = Field(0.0, ge=0)  # for "within"
    epoch: Optional[int] = Field(None, ge=0)  # None: the variant's last epoch; 0: at initialisation (probes)
    threshold: Optional[float] = None  # for metric "epochs_to_acc": the test accuracy to reach
    # Why the code fixes the outcome before any data (zero weights and zeroed biases get zero gradients): the
    # claim is then shown "true by construction", an illustration counted apart, never evidence.
    by_construction: str = ""
    history: Optional[ClaimHistoryConfig] = None  # a change after results that the claim itself declares

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v):
        name, at, arg = v.partition("@")
        _registered(CLAIM_METRICS, name)
        example = CLAIM_METRICS.entry(name).meta.get("arg")
        if example and not arg:
            raise ValueError(f"metric {name} needs an argument after '@', e.g. {name}@{example}")
        if at and not example:
            raise ValueError(f"metric {name} takes no argument; write {name!r}")
        return v

    @field_validator("source")
    @classmethod
    def _known_source(cls, v):
        if is_reference(v) and v not in STATEMENTS:
            raise ValueError(f"source {v!r} is not a reference statement; use one of R2.1 to R6.5 "
                             f"({', '.join(STATEMENTS)}), 'nnstudy', or your own text")
        return v

    @model_validator(mode="before")
    @classmethod
    def _effect_against_zero(cls, data):
        if isinstance(data, dict) and data.get("effect") is not None and "value" not in data and "baseline" not in data:
            data = {**data, "value": 0.0}  # an effect is judged against no effect unless the claim says otherwise
        return data

    @model_validator(mode="after")
    def _one_reference(self):
        if (self.variant is None) == (self.effect is None):
            raise ValueError("a claim names a variant (with a baseline or a value) or a grid effect: give exactly one "
                             "of variant and effect")
        if self.effect is not None and self.baseline is not None:
            raise ValueError("a claim on an effect compares it with a fixed value (0 when left out), not a baseline")
        if (self.baseline is None) == (self.value is None):
            raise ValueError("a claim compares with a baseline variant or a fixed value: give exactly one of "
                             "baseline and value")
        if self.metric == "epochs_to_acc" and self.threshold is None:
            raise ValueError("metric epochs_to_acc needs threshold (a test accuracy, e.g. 0.97)")
        if self.history is not None:  # the first definition must be a claim too
            try:
                ClaimConfig(**declared_first(self.model_dump(exclude={"history"}), self.history.first))
            except ValueError as exc:
                errors = exc.errors() if hasattr(exc, "errors") else [{"msg": str(exc)}]
                raise ValueError(f"history.first is not a valid claim: {errors[0]['msg']}") from None
        return self
