"""A grid in a study file: every combination of some settings' values, as named variants.

    [grid]
    "model.activation" = ["relu", "sigmoid"]
    "model.init" = ["default", "xavier"]
    exclude = ["sigmoid-xavier"]        # cell names, or tables of coordinates: [{ "model.init" = "xavier" }]
    max_cells = 64                      # the size limit (the default)

Expansion happens when the study is loaded, so a cell is a variant like any other: it plans, stacks,
resumes and exports as one. A cell's name comes from its values alone (`relu-xavier`; numbers and
true/false carry their key: `lr0.01`, `no-nesterov`), never from its position, so adding a value to
a grid keeps every existing cell's name and resolved config, and only the new cells train.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from nnstudy.config.paths import check_value, flatten, set_path, setting, takes_list
from nnstudy.errors import UserError

OPTIONS = ("exclude", "max_cells")
MAX_CELLS = 64
# One test set for every variant (StudyConfig._one_test_set); the study's own keys are not run settings.
FIXED = {"dataset.name": "every variant is tested on the same data", "dataset.data_dir": "every variant is tested on "
         "the same data", "dataset.test_subset": "every variant is tested on the same data"}
STUDY_KEYS = ("name", "description", "seeds", "baseline", "report_epochs", "claims", "sequential")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class Grid:
    factors: dict[str, list]  # setting path -> its values, in the file's order
    cells: dict[str, dict[str, Any]]  # cell name -> its coordinates (path -> value)
    exclude: list
    max_cells: int

    def variant_tables(self) -> dict[str, dict]:
        """Each cell as a variant's table of overrides, {"model": {"activation": "relu", ...}}."""
        tables = {}
        for name, coords in self.cells.items():
            table: dict = {}
            for path, value in coords.items():
                set_path(table, path, value)
            tables[name] = table
        return tables

    def as_config(self) -> dict:
        """What the study config records (config.schema.GridConfig), so reports and exports read the coordinates."""
        return {"factors": self.factors, "cells": self.cells, "exclude": self.exclude, "max_cells": self.max_cells}


def cannot_vary(path: str) -> str | None:
    """Why a setting cannot take several values in one study, or None when it can."""
    if path.split(".")[0] in STUDY_KEYS:
        return "it is the study's, not a run's (a grid varies dataset.*, model.* and train.* settings)"
    return FIXED.get(path)


def expand_grid(raw, source: str, taken=()) -> Grid:
    """The grid table of a study file as cells; one line for each kind of mistake. `taken`: hand-written variants."""
    where = f"{source}: grid"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table like [grid] \"model.activation\" = [\"relu\", \"tanh\"]")
    options = {k: raw[k] for k in OPTIONS if k in raw}
    factors = _factors(flatten({k: v for k, v in raw.items() if k not in OPTIONS}), where)
    max_cells = options.get("max_cells", MAX_CELLS)
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise UserError(f"{where}.max_cells must be a whole number >= 1 (got {max_cells!r})")
    exclude = options.get("exclude", [])
    if not isinstance(exclude, list):
        raise UserError(f"{where}.exclude must be a list of cell names or coordinate tables, e.g. [\"sigmoid-xavier\"]")
    cells = _cells(factors, where, max_cells, exclude)
    clash = [name for name in cells if name in taken]
    if clash:
        raise UserError(f"{where}: cell {clash[0]!r} has the name of a variant written by hand; rename that variant")
    return Grid(factors, cells, exclude, max_cells)


def _factors(entries: dict, where: str) -> dict[str, list]:
    if not entries:
        raise UserError(f"{where} has no settings; add one, e.g. \"model.activation\" = [\"relu\", \"tanh\"]")
    factors = {}
    for path, values in entries.items():
        why = cannot_vary(path)
        if why:
            raise UserError(f"{where}: {path} cannot vary: {why}")
        setting(path, where)
        example = "[[64], [128, 64]]" if takes_list(path) else "[\"relu\", \"tanh\"]"
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}.{path} must be a non-empty list of values, e.g. {example}")
        if takes_list(path) and not all(isinstance(v, list) for v in values):
            raise UserError(f"{where}.{path} takes a list as its value: a grid over it lists lists, e.g. {example}")
        for value in values:
            check_value(path, value, where)
        texts = [json.dumps(v, sort_keys=True) for v in values]
        repeated = next((v for i, v in enumerate(values) if texts[i] in texts[:i]), None)
        if repeated is not None:
            raise UserError(f"{where}.{path} lists {repeated!r} twice; list each value once")
        factors[path] = values
    return factors


def _cells(factors: dict[str, list], where: str, max_cells: int, exclude: list) -> dict[str, dict]:
    paths = list(factors)
    matchers = [_matcher(entry, factors, where) for entry in exclude]
    used = [False] * len(matchers)
    cells: dict[str, dict] = {}
    for values in itertools.product(*factors.values()):
        coords = dict(zip(paths, values))
        name = cell_name(coords)
        hits = [i for i, match in enumerate(matchers) if match(name, coords)]
        for i in hits:
            used[i] = True
        if hits:
            continue
        if not _NAME.match(name):
            raise UserError(f"{where}: cell name {name!r} (from {_coords_text(coords)}) is not a usable folder name; "
                            f"use values of letters, digits, '-', '_', '.' or '+', at most 64 characters in all")
        if name in cells:
            raise UserError(f"{where}: two cells are named {name!r} ({_coords_text(cells[name])} and "
                            f"{_coords_text(coords)}); make the values differ as text")
        cells[name] = coords
        if len(cells) > max_cells:
            total = 1
            for values in factors.values():
                total *= len(values)
            raise UserError(f"{where} has more than {max_cells} cells ({' x '.join(str(len(v)) for v in factors.values())}"
                            f" = {total} before exclusions); allow it with max_cells = {total} in [grid] "
                            f"(grid.max_cells={total} on the command line), or exclude cells")
    unused = [exclude[i] for i, u in enumerate(used) if not u]
    if unused:
        raise UserError(f"{where}.exclude entry {unused[0]!r} matches no cell; cells are named like "
                        f"{next(iter(cells), '?')!r}")
    if not cells:
        raise UserError(f"{where}.exclude leaves no cell; exclude fewer")
    return cells


def _matcher(entry, factors: dict[str, list], where: str):
    """A test of (name, coordinates) for one exclude entry: a cell name, or a table of some coordinates."""
    if isinstance(entry, str):
        return lambda name, coords: name == entry
    if not isinstance(entry, dict) or not entry:
        raise UserError(f"{where}.exclude entries are cell names or tables of coordinates, e.g. "
                        f"{{ \"model.init\" = \"xavier\" }} (got {entry!r})")
    wanted = flatten(entry)
    for path, value in wanted.items():
        if path not in factors:
            raise UserError(f"{where}.exclude entry {entry!r}: {path} is not a grid setting ({', '.join(factors)})")
        if value not in factors[path]:
            raise UserError(f"{where}.exclude entry {entry!r}: {value!r} is not one of {path}'s values {factors[path]}")
    return lambda name, coords: all(coords[p] == v for p, v in wanted.items())


def cell_name(coords: dict[str, Any]) -> str:
    """"relu-xavier": the values' text joined by '-', in the grid's order."""
    return "-".join(_value_text(path, value) for path, value in coords.items())


def _value_text(path: str, value) -> str:
    key = path.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return key if value else f"no-{key}"
    if isinstance(value, (int, float)):
        return f"{key}{value}"
    if isinstance(value, list):
        return key + "x".join(str(v) for v in value)
    if isinstance(value, dict):
        value = key + json.dumps(value, sort_keys=True, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value))


def _coords_text(coords: dict) -> str:
    return ", ".join(f"{p} = {json.dumps(v)}" for p, v in coords.items())
