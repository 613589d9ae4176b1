"""One registry per extension point: what the study file may name, and how to build it.

The schema's allowed values, the builders and the stacked engine all read the
same registry, so adding a pooling type, an activation, a loss or a dataset is
one decorated entry where it is implemented, e.g. in `models/layers.py`:

    @POOLINGS.register("min", per_channel=True)
    def _min_pool(size): ...

Users extend nnstudy the same way from their own code (`nnstudy.ACTIVATIONS.register(...)`)
before they load a study. Each registry imports the modules holding its own
built-in entries on its first lookup, and only those: naming a loss does not
load the report or the executors (a study's start-up pays for what it uses).
So this module stays at the bottom of the package (it imports nothing of
nnstudy but the error type).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from nnstudy.errors import UserError

_DECORATE = object()


@dataclass
class Entry:
    name: str
    build: Any
    meta: dict = field(default_factory=dict)


class Registry:
    """Named entries of one kind ("activation", "pooling", ...), in registration order."""

    def __init__(self, kind: str, key: str, builtins: tuple[str, ...] = ()):
        self.kind, self.key = kind, key  # key: the study-file key that names an entry, for messages
        self._builtins = builtins  # the modules whose decorators add nnstudy's own entries, imported on first lookup
        self._entries: dict[str, Entry] = {}

    def _load_builtins(self) -> None:
        modules, self._builtins = self._builtins, ()  # emptied first: a module may look this registry up
        for name in modules:
            importlib.import_module(name)

    def register(self, name: str, build: Any = _DECORATE, **meta) -> Callable:
        """Add `build` under `name` (without `build`: a decorator); `meta` tells the engine about it."""
        def add(obj):
            self._entries[name] = Entry(name, obj, meta)
            return obj
        return add if build is _DECORATE else add(build)

    def remove(self, name: str) -> None:
        """Forget an entry (a notebook trying out an extension, a test)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        self._load_builtins()
        return tuple(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def entry(self, name: str) -> Entry:
        if name not in self.names():
            raise UserError(self.unknown(name))
        return self._entries[name]

    def get(self, name: str):
        return self.entry(name).build

    def unknown(self, name: str) -> str:
        """The one-line message for a name that is not registered, with close matches first."""
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        return f"{self.key} = {name!r} is not a known {self.kind}; {hint}choose one of: {', '.join(self.names())}"


_LAYERS = ("nnstudy.models.layers",)
ACTIVATIONS = Registry("activation", "model.activation", _LAYERS)
POOLINGS = Registry("pooling", "model.pool", _LAYERS)
INITS = Registry("initialisation", "model.init", _LAYERS)
NORMS = Registry("normalisation", "model.norm", _LAYERS)
MODELS = Registry("model kind", "model.kind", ("nnstudy.models.build", "nnstudy.models.external"))
LOSSES = Registry("loss", "train.loss", ("nnstudy.training.losses",))
OPTIMIZERS = Registry("optimiser", "train.optimizer", ("nnstudy.training.optim",))
SCHEDULES = Registry("schedule", "train.schedule", ("nnstudy.training.optim",))
DATASETS = Registry("dataset", "dataset.name", ("nnstudy.data", "nnstudy.data.external"))
REPORT_SECTIONS = Registry("report section", "report section",
                           ("nnstudy.report.sections", "nnstudy.report.factorial_section"))
CLAIM_METRICS = Registry("claim metric", "claims.metric", ("nnstudy.stats.claim_metrics",))
PROBES = Registry("probe", "probe", ("nnstudy.training.probes",))
EXECUTORS = Registry("executor", "--executor", ("nnstudy.executors.local", "nnstudy.executors.ray"))

ALL = {r.kind: r for r in (ACTIVATIONS, POOLINGS, INITS, NORMS, MODELS, LOSSES, OPTIMIZERS, SCHEDULES, DATASETS,
                           REPORT_SECTIONS, CLAIM_METRICS, PROBES, EXECUTORS)}


def import_reference(ref: str, what: str, base_dir: str | None = None):
    """Import "package.module:attribute" (from the study file's folder or the import path).

    `what` names the study-file key in the error, e.g. "model.factory".
    """
    import sys

    module_name, sep, attr = str(ref).partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{what} = {ref!r} is not a reference; write it as \"package.module:function\"")
    added = base_dir is not None and base_dir not in sys.path
    if added:
        sys.path.insert(0, base_dir)
    _forget_if_changed(module_name, base_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{what} = {ref!r}: cannot import module {module_name!r} ({exc}); put it next to the study "
                        "file or on PYTHONPATH") from None
    except Exception as exc:  # the user's module raised while importing
        raise UserError(f"{what} = {ref!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(base_dir)
    try:
        return getattr(module, attr)
    except AttributeError:
        close = difflib.get_close_matches(attr, [n for n in dir(module) if not n.startswith("_")], n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"{what} = {ref!r}: module {module_name!r} has no {attr!r}{hint}") from None


_imported: dict[str, int] = {}  # module name -> mtime of the study-folder file it was imported from


def _forget_if_changed(module_name: str, base_dir: str | None) -> None:
    """Re-import a user's module that was edited, or that now comes from another study's folder.

    A notebook session lives long: without this it would keep running the first
    version of `my_net.py` it imported.
    """
    import sys
    from pathlib import Path

    if base_dir is None:
        return
    path = Path(base_dir, *module_name.split("."))
    path = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    if not path.is_file():
        return
    cached = sys.modules.get(module_name)
    mtime = path.stat().st_mtime_ns
    if cached is not None and (Path(getattr(cached, "__file__", "") or "").resolve() != path.resolve()
                               or _imported.get(module_name) != mtime):
        del sys.modules[module_name]
        importlib.invalidate_caches()
    _imported[module_name] = mtime
