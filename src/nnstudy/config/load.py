"""Read a study file (TOML: data, never code), resolve variants, validate.

Every problem becomes one `UserError` line naming the file, the key and what
is allowed, before anything is trained.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from nnstudy.config.grid import expand_grid
from nnstudy.config.overrides import apply_overrides
from nnstudy.config.schema import RunConfig, StudyConfig
from nnstudy.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
TOP_LEVEL_KEYS = ("name", "description", "seeds", "baseline", "report_epochs", "dataset", "model", "train", "variants",
                  "claims", "sequential", "grid", "overrides")
BASELINE_VARIANT = "baseline"


def builtin_studies() -> dict[str, str]:
    """Built-in study name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files("nnstudy.studies").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".toml")]] = data.get("description", "").strip().splitlines()[0] if data.get("description") else ""
    return out


def builtin_study_text(name: str) -> str:
    entry = resources.files("nnstudy.studies").joinpath(f"{name}.toml")
    if not entry.is_file():
        raise UserError(f"no built-in study named {name!r}; built-in studies: {', '.join(builtin_studies())} (or pass a path to a .toml file)")
    return entry.read_text(encoding="utf-8")


def load_study(name_or_path: str, overrides: dict | None = None) -> StudyConfig:
    """Load a built-in study by name or a study file by path.

    `overrides` are command-line settings applied on top of the file:
    `seeds` (list), `data_dir` (str), `precision` (str), `looks` (list) and
    `smallest_difference` (float) for a study run until decided, and `settings`: KEY=VALUE
    texts (config/overrides.py), applied after the file's own `overrides` list.
    """
    raw, source, base_dir = read_toml(name_or_path, "study", builtin_studies, builtin_study_text,
                                      " (see `nnstudy init quickstart example.toml` for a model file)")
    return parse_study(raw, source, base_dir, overrides or {})


def read_toml(name_or_path: str, what: str, builtins, builtin_text, hint: str = "") -> tuple[dict, str, Path | None]:
    """A study's or a suite's file, or a built-in one by name: (parsed TOML, its name in messages, the folder its
    relative paths start from (None for a built-in)). `builtins()` lists the built-in names, `builtin_text(name)`
    reads one; every problem is one line."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"{what} file {path} not found; pass an existing .toml file or a built-in name "
                            f"({', '.join(builtins())})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {what} file {path}: {exc}") from exc
        source, base_dir = str(path), path.resolve().parent
    else:
        text, source, base_dir = builtin_text(name_or_path), f"built-in {what} {name_or_path}", None
    try:
        return tomllib.loads(text), source, base_dir
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: not valid TOML: {exc}; fix the syntax{hint}") from exc


def parse_study(raw: dict, source: str, base_dir: Path | None = None, overrides: dict | None = None) -> StudyConfig:
    """Validate a parsed study dict; `source` names it in error messages."""
    overrides = overrides or {}
    unknown = [k for k in raw if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}; allowed top-level keys: {', '.join(TOP_LEVEL_KEYS)}")
    applied = _overrides_of(raw, source) + list(overrides.get("settings") or [])
    if applied:
        raw = apply_overrides(raw, applied, source)
    base = {k: copy.deepcopy(raw[k]) for k in ("dataset", "model", "train") if k in raw}
    if "dataset" not in base:
        raise UserError(f"{source}: missing [dataset] table; add e.g. [dataset] name = \"digits\"")
    if not isinstance(base["dataset"], dict):
        raise UserError(f"{source}: dataset must be a table like [dataset] name = \"digits\"")
    _apply_overrides(base, overrides, base_dir)
    variants_raw = raw.get("variants", {})
    if not isinstance(variants_raw, dict):
        raise UserError(f"{source}: variants must be tables like [variants.wide] model.channels = [30, 30]")
    grid = expand_grid(raw["grid"], source, taken=variants_raw) if "grid" in raw else None
    if grid is not None:
        variants_raw = {**variants_raw, **grid.variant_tables()}
    if not variants_raw:
        variants_raw = {BASELINE_VARIANT: {}}

    if base_dir is not None:
        base["source_dir"] = str(base_dir)
    base_cfg = _validate(RunConfig, base, source, prefix="")
    variants = {}
    for vname, vover in variants_raw.items():
        if not _VARIANT_NAME.match(str(vname)):
            raise UserError(f"{source}: variant name {vname!r} is not allowed; use letters, digits, '-', '_', '.' or '+' (it names a folder)")
        if not isinstance(vover, dict):
            raise UserError(f"{source}: variants.{vname} must be a table of overrides like model.norm = \"batch\"")
        bad = [k for k in vover if k not in ("dataset", "model", "train")]
        if bad:
            raise UserError(f"{source}: variants.{vname}: unknown key {bad[0]!r}; a variant may override dataset.*, model.* and train.*")
        merged = _deep_merge(base_cfg.model_dump(by_alias=True), vover)
        _apply_overrides(merged, overrides, base_dir)
        variants[vname] = _validate(RunConfig, merged, source, prefix=f"variants.{vname}.")

    study = {k: raw[k] for k in ("name", "description", "seeds", "baseline", "report_epochs", "claims", "sequential")
             if k in raw}
    if "seeds" in overrides:
        study["seeds"] = overrides["seeds"]
    sequential = {k: overrides[k] for k in ("looks", "smallest_difference") if overrides.get(k) is not None}
    if sequential:
        merged = {**(study.get("sequential") or {}), **sequential}
        missing = [k for k in ("looks", "smallest_difference") if k not in merged]
        if missing:
            flag = "--" + missing[0].replace("_", "-")
            raise UserError(f"{source}: running until decided needs {flag} as well (or a [sequential] table in the "
                            f"study file with {missing[0]})")
        study["sequential"] = merged
    if "name" not in study:
        raise UserError(f"{source}: missing key 'name'; add e.g. name = \"my-study\"")
    study.setdefault("seeds", [0])
    if grid is not None:
        study["grid"] = grid.as_config()
    study["overrides"] = applied
    return _validate(StudyConfig, {**study, "base": base_cfg, "variants": variants}, source, prefix="")


def _overrides_of(raw: dict, source: str) -> list[str]:
    """The study file's own `overrides = ["train.lr=0.01", ...]` (what `nnstudy init NAME FILE KEY=VALUE` writes)."""
    items = raw.get("overrides", [])
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise UserError(f"{source}: overrides must be a list of \"KEY=VALUE\" texts, e.g. [\"train.lr=0.01\"]")
    return items


def _apply_overrides(cfg: dict, overrides: dict, base_dir: Path | None) -> None:
    ds = cfg.setdefault("dataset", {})
    if overrides.get("data_dir"):
        ds["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    elif isinstance(ds, dict) and isinstance(ds.get("data_dir"), str) and base_dir is not None:
        # Paths in a study file are relative to the file, so the file can move with its data.
        ds["data_dir"] = str((base_dir / Path(ds["data_dir"]).expanduser()).resolve())
    if overrides.get("precision"):
        cfg.setdefault("train", {})["precision"] = overrides["precision"]


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _validate(model, data: dict, source: str, prefix: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(_one_line(exc, model, source, prefix)) from None


def _one_line(exc: ValidationError, model, source: str, prefix: str) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # Schema internals ("base", "variants.X") map back to the file's own keys.
    if model is StudyConfig and loc and loc[0] in ("base", "variants"):
        loc = loc[1:] if loc[0] == "base" else loc
    key = prefix + ".".join(loc)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"{source}: unknown key {key!r}{hint}"
    if err["type"] == "missing":
        return f"{source}: missing required key {key!r}"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {json.dumps(got, default=str)})"
    msg = err["msg"].replace("Value error, ", "")
    return f"{source}: {key}: {msg}{got_text}" if key else f"{source}: {msg}"  # no key: a cross-field check


def _allowed_keys(model, loc) -> list[str]:
    cls = model
    for part in loc:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return list(getattr(cls, "model_fields", {}))


def config_hash(run_cfg: RunConfig, seed: int, dataset_fingerprint: str) -> str:
    """A run's identity: its resolved config, seed and data, not where the data lives."""
    cfg = _comparable(run_cfg.model_dump())
    blob = json.dumps({"config": cfg, "seed": seed, "data": dataset_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def variant_hash(cfg: dict) -> str:
    """A variant's config (a resolved RunConfig as stored in a study's spec) as a short hash, by the rules of
    `config_hash` without seed or data: what a claim's first definition records of the variants it compares."""
    blob = json.dumps(_comparable(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _comparable(cfg: dict) -> dict:
    """A config dict without where things live, and with keys added since at their defaults left out."""
    cfg = copy.deepcopy(cfg)
    cfg["dataset"].pop("data_dir", None)
    cfg["train"].pop("eval_every", None)  # how often the test set is looked at: the training is the same
    cfg.pop("source_dir", None)
    _as_before_extensions(cfg)
    return cfg


# Keys added with user models and datasets, and the old defaults of two keys that
# became optional: left out of the hash at their defaults, so that runs stored by
# earlier versions keep their identity and are not retrained.
_ADDED_KEYS = {"dataset": ("class_", "factory", "args"), "model": ("name", "factory", "args"), "train": ("loss_args",)}


def _as_before_extensions(cfg: dict) -> None:
    for section, keys in _ADDED_KEYS.items():
        for key in keys:
            if cfg[section].get(key) in (None, {}):
                cfg[section].pop(key, None)
    if cfg["model"]["kind"] in ("cnn", "mlp"):
        cfg["model"]["activation"] = cfg["model"]["activation"] or "relu"
        cfg["model"]["norm"] = cfg["model"]["norm"] or "none"


def with_overrides(text: str, items: list[str], source: str) -> str:
    """A study file's text with `overrides = [...]` written in, checked by loading it.

    The list goes first in the file, where TOML's top-level keys belong, so the file's own
    tables and comments stay as they were; the loader applies it like the command line's.
    """
    import json

    raw = tomllib.loads(text)
    if "overrides" in raw:
        raise UserError(f"{source} already has an overrides list; copy it without KEY=VALUE, then edit that list")
    parse_study({**raw, "overrides": items}, source)  # a mistake is one line now, not at the first run
    head = ["# Settings given to `nnstudy init` (KEY=VALUE, applied over the tables below):",
            f"overrides = [{', '.join(json.dumps(x) for x in items)}]", ""]
    return "\n".join(head) + text
