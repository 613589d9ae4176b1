"""Export a study to TensorBoard: one run per (variant, seed), in DIR/<study>/<variant>/seed-<k>.

Each run holds the per-epoch metrics and the probes as scalars (step = epoch;
probes at step 0 are at initialisation) and its resolved config as
hyperparameters for the HParams dashboard (a grid cell's coordinates also as
`grid.model.activation`, ...; with the final metrics as
`hparam/test_acc`, ...). The seeds of a variant sit under one folder, so
TensorBoard's run filter shows a variant's seeds together.

Exporting again replaces DIR/<study> whole rather than refusing: the store is
the source of truth and the folder only a view of it, so a second export gives
exactly what the first would have given on today's store (runs finished since
included), and TensorBoard, which appends, never sees an epoch twice. The new
folder is written beside the old one and swapped in at the end, so an export
that fails leaves the previous one as it was. A folder there that holds
anything but event files is not ours to replace: the export refuses it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from nnstudy.errors import UserError
from nnstudy.export.study import ExportRun, StudyExport

EVENTS = "events.out.tfevents."  # how every event file's name starts
HPARAM_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
INSTALL = "pip install 'nnstudy[export]' (or pip install tensorboard)"


def check(dest: str | None = None) -> None:
    """TensorBoard is installed and DIR can be written, before anything is read or written."""
    if not dest:
        raise UserError("--to tensorboard needs a folder: --to tensorboard DIR")
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError(f"--to tensorboard needs TensorBoard, which is not installed; {INSTALL}") from None
    folder = Path(dest)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise UserError(f"cannot write TensorBoard folder {folder} ({exc.strerror or exc}); fix its permissions or "
                        "choose another DIR") from None


def export(study: StudyExport, dest: str) -> str:
    from torch.utils.tensorboard import SummaryWriter

    root = Path(dest) / study.name
    _refuse_foreign(root)
    new = Path(tempfile.mkdtemp(prefix=f".{study.name}.new-", dir=dest))
    try:
        for run in study.runs:
            _write_run(SummaryWriter, new / _folder(run.result.variant) / f"seed-{run.result.seed}", run)
        _swap(new, root)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # gone already once swapped in
    skipped = f"; {study.skipped} pending or running not exported" if study.skipped else ""
    return f"tensorboard: {study.name} -> {root}: {len(study.runs)} runs (tensorboard --logdir {dest}){skipped}"


def _write_run(SummaryWriter, folder: Path, run: ExportRun) -> None:
    with SummaryWriter(log_dir=str(folder)) as w:
        for name, step, value in run.epoch_metrics() + run.probe_metrics():
            w.add_scalar(name, value, step)
        last = run.result.final.epoch if run.result.final else 0
        # run_name=".": the HParams summary goes into this run's folder, not a timestamped subfolder (a run of its own).
        w.add_hparams(dict(run.params), {f"hparam/{m}": run.final(m) for m in HPARAM_METRICS}, run_name=".",
                      global_step=last)


def _folder(name: str) -> str:
    """A variant name as one folder name (no separators, no '..')."""
    safe = re.sub(r"[^\w.-]", "_", name)
    return "_" if safe in ("", ".", "..") else safe


def _refuse_foreign(root: Path) -> None:
    if root.is_file() or root.is_symlink():
        raise UserError(f"{root} exists and is not a folder; move it away or choose another DIR")
    if root.is_dir():
        foreign = next((p for p in root.rglob("*") if p.is_file() and not p.name.startswith(EVENTS)), None)
        if foreign is not None:
            raise UserError(f"{root} holds {foreign.relative_to(root)}, not a TensorBoard event file; an export "
                            "replaces that folder whole, so move it away or choose another DIR")


def _swap(new: Path, root: Path) -> None:
    """Put `new` where `root` is: the old folder is moved aside first and removed last."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        root.rename(old / root.name)
    new.rename(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
