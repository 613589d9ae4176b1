"""Settings given as KEY=VALUE (on the command line, or a study file's `overrides` list), applied to a study.

    train.lr=0.01                 the base setting, for every variant that does not set it itself
    variants.B.model.norm=batch   one hand-written variant's setting
    model.activation=relu,tanh    a comma list: a grid over the setting (made, extended, or its values replaced)
    model.hidden=64,32            ... except on a setting that takes a list: then one list value
    model.hidden=[64],[128,64]    (a grid over such a setting lists lists)
    seeds=0,1,2  grid.max_cells=100  name=other-name

Values are read as TOML values (`0.01`, `true`, `[64, 32]`, `"a b"`), a bare word as text; the study is
then validated by the same schema as a file. Every mistake is one line naming the override.
"""

from __future__ import annotations

import copy

from nnstudy.config.grid import OPTIONS as GRID_OPTIONS
from nnstudy.config.grid import STUDY_KEYS, cannot_vary
from nnstudy.config.paths import check_value, closest, flatten, get_path, set_path, setting, setting_fields, takes_list
from nnstudy.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

_MISSING = object()
_TEXT_KEYS = ("description",)  # a comma is part of the text
_LIST_KEYS = ("seeds", "report_epochs")  # a comma list is the value itself
_FILE_ONLY = ("claims", "sequential")


def apply_overrides(raw: dict, items: list[str], source: str) -> dict:
    """A copy of the parsed study file `raw` with each KEY=VALUE in `items` applied, in order."""
    raw = copy.deepcopy(raw)
    if "grid" in raw and isinstance(raw["grid"], dict):
        raw["grid"] = flatten(raw["grid"])  # one key per setting, whether the file wrote it dotted or nested
    seen: dict[str, str] = {}
    for text in items:
        if not isinstance(text, str):
            raise UserError(f"{source}: overrides must be a list of \"KEY=VALUE\" texts, e.g. [\"train.lr=0.01\"]")
        key, values, where = _split(text, source)
        if key in seen:
            raise UserError(f"{where}: {key} is already set by {seen[key]!r}; give each setting once")
        seen[key] = text
        head = key.split(".")[0]
        if head == "variants":
            _variant(raw, key, values, where)
        elif head == "grid":
            _grid_option(raw, key, values, where)
        elif head in STUDY_KEYS:
            _study_key(raw, key, values, where)
        else:
            _setting(raw, key, values, where)
    return raw


def _split(text: str, source: str) -> tuple[str, list, str]:
    key, eq, value = text.partition("=")
    key = key.strip()
    where = f"{source}: override {text!r}"
    if not eq or not key:
        raise UserError(f"{where} is not KEY=VALUE; write e.g. train.lr=0.01 or model.activation=relu,tanh")
    if key in _TEXT_KEYS:
        pieces = [value.strip()]
    else:
        pieces = [p.strip() for p in _top_level_split(value)]
    if any(not p for p in pieces):
        raise UserError(f"{where}: an empty value; give a value after '=' and between commas, e.g. {key}=relu,tanh")
    return key, [_value(p) for p in pieces], where


def _top_level_split(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: "[64],[128, 64]" -> ["[64]", "[128, 64]"]."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    return pieces + [text[start:]]


def _value(text: str):
    """A TOML value ("0.01", "true", "[64, 32]", "'a b'"), or else the text itself (a bare word: relu)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _variant(raw: dict, key: str, values: list, where: str) -> None:
    parts = key.split(".")
    variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
    if len(parts) < 4:
        raise UserError(f"{where}: write variants.NAME.SECTION.KEY=VALUE, e.g. variants.B.model.norm=batch")
    name, path = parts[1], ".".join(parts[2:])
    if name not in variants:
        known = ", ".join(variants) or "none (add variants to the file, or vary a setting with a grid)"
        raise UserError(f"{where}: no variant {name!r}{closest(name, variants)}; variants written by hand: {known}")
    setting(path, where)
    value = _one_value(path, values, where, hint=f"a variant's setting takes one value; to vary {path}, make a grid: "
                                                 f"{path}=a,b")
    set_path(variants[name], path, value)


def _grid_option(raw: dict, key: str, values: list, where: str) -> None:
    option = key[len("grid."):]
    if option not in GRID_OPTIONS:
        _setting(raw, option, values, where)  # grid.model.activation=relu,tanh: as model.activation=relu,tanh
        return
    grid = raw.setdefault("grid", {})
    if not isinstance(grid, dict):
        raise UserError(f"{where}: the study file's grid is not a table")
    grid[option] = values if option == "exclude" else _one_value(key, values, where, hint=f"{key} takes one number")


def _study_key(raw: dict, key: str, values: list, where: str) -> None:
    if key in _FILE_ONLY:
        raise UserError(f"{where}: {key} cannot be set on the command line; edit the study file"
                        + (" (or use --looks and --smallest-difference)" if key == "sequential" else ""))
    if key in _LIST_KEYS:
        raw[key] = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        return
    raw[key] = _one_value(key, values, where, hint=f"{key} cannot vary: it is the study's, not a run's setting")


def _setting(raw: dict, path: str, values: list, where: str) -> None:
    if path not in setting_fields() and not path.startswith(("dataset.", "model.", "train.")):
        choices = [*STUDY_KEYS, *setting_fields(), "grid.max_cells", "variants.NAME.model.norm"]
        raise UserError(f"{where}: unknown key {path!r}{closest(path, choices)} (keys are dataset.*, model.*, "
                        f"train.*, variants.NAME.*, grid.max_cells, seeds, name, ...)")
    if setting(path, where) != path:  # a key inside a dict setting (model.args.depth=3): one value, any type
        set_path(raw, path, _one_value(path, values, where, hint=f"{path} takes one value"))
        return
    grid = raw.get("grid") if isinstance(raw.get("grid"), dict) else {}
    levels, value = _levels(path, values, where)
    if levels is not None:
        why = cannot_vary(path)
        if why:
            raise UserError(f"{where}: {path} cannot vary: {why}")
        raw["grid"] = {**grid, path: levels}
        return
    if path in grid:
        raise UserError(f"{where}: {path} is a grid setting (values {grid[path]}); give a list to change its values, "
                        f"e.g. {path}={','.join(str(v) for v in grid[path][:2])}")
    for name, table in (raw.get("variants") or {}).items():
        theirs = get_path(table, path, _MISSING) if isinstance(table, dict) else _MISSING
        if theirs is not _MISSING and theirs != value:
            raise UserError(f"{where} contradicts variant {name}, which sets {path} = {theirs!r}; set it there "
                            f"instead (variants.{name}.{path}=...) or leave the override out")
    check_value(path, value, where)
    set_path(raw, path, value)


def _levels(path: str, values: list, where: str) -> tuple[list | None, object]:
    """(the values of a grid over `path`, None) when the override gives several, else (None, the one value)."""
    if takes_list(path):
        lists = [isinstance(v, list) for v in values]
        if not any(lists):
            return None, values  # model.hidden=64,32: one list
        if not all(lists):
            raise UserError(f"{where}: mix of lists and single values; {path} takes a list: write {path}=64,32 for "
                            f"one value or {path}=[64],[128,64] for a grid")
        levels = values
    else:
        levels = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        if levels == []:
            raise UserError(f"{where}: an empty list; give at least one value")
    if len(levels) == 1:
        return None, levels[0]
    for level in levels:
        check_value(path, level, where)
    return levels, None


def _one_value(path: str, values: list, where: str, hint: str):
    """The single value of an override that cannot take a list of values (as a list setting, a comma list is one)."""
    if path in setting_fields() and takes_list(path) and not any(isinstance(v, list) for v in values):
        value = values
    elif len(values) == 1:
        value = values[0]
    else:
        raise UserError(f"{where}: {hint}")
    if path in setting_fields():
        check_value(path, value, where)
    return value
