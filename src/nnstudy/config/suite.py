"""Read a suite file: several studies run as one (`nnstudy run coursework`), data, never code.

    kind = "suite"
    name = "coursework"
    description = "..."
    studies = ["mnist-init", "cifar10-cnn", "my-study.toml"]   # built-in names or files (relative to this file)
    optional = ["mnist-activations-1000"]                      # run only when asked: --with NAME
    replication = true                                         # also write the coursework's replication report

Built-in suites live in `nnstudy/suites/`; every problem is one `UserError` line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from nnstudy.config.load import builtin_studies, read_toml, tomllib
from nnstudy.errors import UserError

SUITE_KIND = "suite"
SUITE_KEYS = ("kind", "name", "description", "studies", "optional", "replication")


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    description: str
    studies: list[str]  # built-in names or resolved file paths, in the file's order
    optional: list[str] = field(default_factory=list)
    replication: bool = False
    source: str = ""  # "built-in suite coursework" or the file's path, for messages

    def chosen(self, extra: list[str]) -> list[str]:
        """Its studies, with the optional ones `extra` names (a name it does not list: a one-line error)."""
        unknown = [e for e in extra if e not in self.optional]
        if unknown:
            offer = f"its optional studies: {', '.join(self.optional)}" if self.optional else "it has none"
            raise UserError(f"--with {unknown[0]}: not an optional study of suite {self.name}; {offer}")
        return self.studies + [s for s in self.optional if s in extra]


def builtin_suites() -> dict[str, str]:
    """Built-in suite name -> its one-line description."""
    out = {}
    for entry in sorted(resources.files("nnstudy.suites").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".toml")]] = (data.get("description") or "").strip().split("\n")[0]
    return out


def is_suite(name_or_path: str) -> bool:
    """Whether `name_or_path` names a built-in suite or a file that says kind = "suite"."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            return path.is_file() and tomllib.loads(path.read_text(encoding="utf-8")).get("kind") == SUITE_KIND
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return False  # the study loader says what is wrong with it
    return name_or_path in builtin_suites()


def load_suite(name_or_path: str) -> SuiteConfig:
    raw, source, base_dir = read_toml(name_or_path, "suite", builtin_suites, builtin_suite_text)
    return parse_suite(raw, source, base_dir)


def builtin_suite_text(name: str) -> str:
    entry = resources.files("nnstudy.suites").joinpath(f"{name}.toml")
    if not entry.is_file():
        raise UserError(f"no built-in suite named {name!r}; built-in suites: {', '.join(builtin_suites())}")
    return entry.read_text(encoding="utf-8")


def parse_suite(raw: dict, source: str, base_dir: Path | None) -> SuiteConfig:
    unknown = [k for k in raw if k not in SUITE_KEYS]
    if unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r}; a suite's keys: {', '.join(SUITE_KEYS)}")
    if raw.get("kind") != SUITE_KIND:
        raise UserError(f"{source}: a suite file says kind = \"suite\" (got {raw.get('kind')!r})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{source}: missing key 'name'; add e.g. name = \"my-suite\"")
    lists = {}
    for key in ("studies", "optional"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise UserError(f"{source}: {key} must be a list of study names or .toml files, e.g. {key} = [\"mnist-loss\"]")
        lists[key] = [_resolve(v, base_dir, source, key) for v in value]
    if not lists["studies"]:
        raise UserError(f"{source}: studies is empty; list at least one study, e.g. studies = [\"mnist-loss\"]")
    every = lists["studies"] + lists["optional"]
    twice = next((s for i, s in enumerate(every) if s in every[:i]), None)
    if twice:
        raise UserError(f"{source}: study {twice} is listed twice; list each study once")
    if not isinstance(raw.get("replication", False), bool):
        raise UserError(f"{source}: replication must be true or false")
    return SuiteConfig(name, str(raw.get("description") or ""), lists["studies"], lists["optional"],
                       raw.get("replication", False), source)


def _resolve(entry: str, base_dir: Path | None, source: str, key: str) -> str:
    """A built-in study name as is; a file relative to the suite file, resolved (and checked to exist)."""
    if not entry.endswith(".toml"):
        if entry not in builtin_studies():
            raise UserError(f"{source}: {key}: no built-in study named {entry!r}; built-in studies: "
                            f"{', '.join(builtin_studies())} (or a .toml file)")
        return entry
    path = Path(entry).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise UserError(f"{source}: {key}: study file {path} not found; give a path relative to the suite file")
    return str(path.resolve())
