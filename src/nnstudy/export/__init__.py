"""Export a stored study to the tools people already keep their runs in (MLflow, TensorBoard).

Each target is one entry of `TARGETS`: the name of its module, imported only
when that target is used, so neither `import nnstudy` nor the other target pays
for MLflow's or TensorBoard's imports. A target module has two functions:
`check(**options)` (the tool is installed, the destination usable: one-line
`UserError`s, before anything is written) and `export(study, **options)`, which
takes the `StudyExport` (see `study.py`) and returns one line saying what it
wrote. A new target is one more entry:

    TARGETS.register("wandb", "nnstudy.export.to_wandb", options=("project",))
"""

from __future__ import annotations

import importlib
from pathlib import Path

from nnstudy.errors import UserError
from nnstudy.export.study import StudyExport, load_study_export
from nnstudy.registry import Registry

TARGETS = Registry("export target", "--to")
# options: what the target takes; "dest" is the folder written after the target's name (--to tensorboard DIR).
TARGETS.register("mlflow", "nnstudy.export.to_mlflow", options=("tracking_uri", "experiment"))
TARGETS.register("tensorboard", "nnstudy.export.to_tensorboard", options=("dest",))


def export_study(out_dir: str | Path, name: str, target: str, **options) -> str:
    """Export study `name` of the store in `out_dir` to `target`; returns the target's one-line summary.

    The store is only read. Options left None are not given; mlflow takes tracking_uri
    and experiment (default: the study's name), tensorboard takes dest (its folder).
    """
    entry = TARGETS.entry(target)  # an unknown target: one line with close matches
    given = {k: v for k, v in options.items() if v is not None}
    extra = [k for k in given if k not in entry.meta["options"]]
    if extra:
        spelled = ["DIR" if k == "dest" else "--" + k.replace("_", "-") for k in extra]
        raise UserError(f"--to {target} does not take {', '.join(spelled)}; leave it out")
    module = importlib.import_module(entry.build)
    study = load_study_export(out_dir, name)  # an unknown study or folder: one line, before the tool is touched
    module.check(**given)
    return module.export(study, **given)


__all__ = ["TARGETS", "StudyExport", "export_study", "load_study_export"]
