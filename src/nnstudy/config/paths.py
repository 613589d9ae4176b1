"""Setting paths ("model.activation", "train.lr"): which exist, which take a list, and whether a value fits.

A grid and the command line's overrides both name settings by path; this module is where such a
path is checked against the schema, so both say the same thing about a mistyped key (the closest
valid one, by difflib) and a value of the wrong type (pydantic's own message).
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from typing import Any

from pydantic import ValidationError

from nnstudy.config.schema import DatasetConfig, ModelConfig, TrainConfig
from nnstudy.errors import UserError

SECTIONS = {"dataset": DatasetConfig, "model": ModelConfig, "train": TrainConfig}


@functools.cache
def setting_fields() -> dict[str, Any]:
    """Every setting a variant can change, "section.key" -> its pydantic FieldInfo (aliases as written in files)."""
    out = {}
    for section, cls in SECTIONS.items():
        for name, field in cls.model_fields.items():
            out[f"{section}.{field.alias or name}"] = field
    return out


def closest(path: str, choices) -> str:
    """"; did you mean 'train.lr'?" for the nearest choice, or "" when nothing is near."""
    near = difflib.get_close_matches(path, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def setting(path: str, where: str) -> str:
    """The setting a path names ("model.args.depth" names the dict setting "model.args"); one line if unknown."""
    fields = setting_fields()
    if path in fields:
        return path
    head = ".".join(path.split(".")[:2])
    if head in fields and _is_dict(fields[head].annotation):
        return head
    raise UserError(f"{where}: unknown setting {path!r}{closest(path, fields)} (settings are dataset.*, model.* "
                    f"and train.*, e.g. model.activation, train.lr)")


def takes_list(path: str) -> bool:
    """Whether a setting's value is itself a list (model.hidden, dataset.mean): then [..] is one value."""
    return _has(setting_fields()[path].annotation, list)


def check_value(path: str, value, where: str) -> None:
    """One line when `value` cannot be the setting's value: its type, bounds and registry name, as the schema
    checks them (checks across settings wait for the whole study's validation)."""
    key = setting(path, where)
    if key != path:  # a key inside a dict setting (model.args.depth): any TOML value
        return
    section, name = path.split(".", 1)
    cls = SECTIONS[section]
    field = next(f for f, info in cls.model_fields.items() if (info.alias or f) == name)
    blank = cls.model_construct(**({"name": "digits"} if cls is DatasetConfig else {}))
    try:
        cls.__pydantic_validator__.validate_assignment(blank, field, value,
                                                       strict=_strict(cls.model_fields[field].annotation, value))
    except ValidationError as exc:
        mine = [e for e in exc.errors() if tuple(e["loc"])[:1] == (field,)]
        if mine:
            msg = mine[0]["msg"].replace("Value error, ", "")
            raise UserError(f"{where}: {path} = {value!r}: {msg}") from None


def _strict(annotation, value) -> bool:
    # TOML keeps its types: a string is never read as a number ("0.1" is not 0.1), as the study file itself.
    return isinstance(value, str) and not _has(annotation, str)


def _args(annotation) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _has(annotation, kind) -> bool:
    return any(a is kind or typing.get_origin(a) is kind for a in _args(annotation))


def _is_dict(annotation) -> bool:
    return _has(annotation, dict)


def set_path(table: dict, path: str, value) -> None:
    """table["model"]["activation"] = value for path "model.activation" (tables made as needed)."""
    *parents, leaf = path.split(".")
    for part in parents:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise UserError(f"{path}: {part} is a value, not a table")
    table[leaf] = value


def get_path(table: dict, path: str, missing=None):
    """The value at a dotted path in nested tables, or `missing`."""
    for part in path.split("."):
        if not isinstance(table, dict) or part not in table:
            return missing
        table = table[part]
    return table


def flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """{"model": {"activation": x}} -> {"model.activation": x}; a dict setting (model.args) stays one value."""
    out = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in setting_fields():
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
