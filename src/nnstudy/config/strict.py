"""The base of every config model: strict (an unknown key is an error) and frozen, and registry-name checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from nnstudy import registry

_REFERENCE = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # "package.module:function"


def _registered(reg: registry.Registry, value, allow_reference: bool = False):
    """A name from the registry (or, where allowed, a "module:function" reference)."""
    if value is None or value in reg or (allow_reference and isinstance(value, str) and ":" in value):
        return value
    raise ValueError(reg.unknown(value).split(" = ", 1)[1])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
