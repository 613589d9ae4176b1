"""Per-run checkpoints: written after every epoch, so a killed study resumes exactly.

A checkpoint holds everything a run needs to continue (weights, optimiser,
random streams, history, kept test predictions) and the run's identity hash,
so a run folder left behind by another config is never resumed by mistake.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nnstudy.errors import UserError
from nnstudy.store import files

CHECKPOINT = "checkpoint.pt"
# The checkpoint one epoch earlier, kept so that a crash between two seeds' checkpoint writes
# can be rolled back and the seeds of a variant resume together, as the same stacked group
# (a different grouping changes the last bits of float results).
PREVIOUS_CHECKPOINT = "checkpoint-prev.pt"


def save_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    """Write the new checkpoint; the one it replaces becomes the previous one."""
    with files.atomic_path(run_dir / CHECKPOINT) as tmp:
        torch.save(checkpoint, tmp)
        if (run_dir / CHECKPOINT).exists():
            os.replace(run_dir / CHECKPOINT, run_dir / PREVIOUS_CHECKPOINT)


def load_checkpoint(path: Path, mmap: bool = False) -> dict | None:
    """A run's checkpoint, or None; a truncated or corrupt file is a clear error.

    `mmap=True` maps the tensors instead of reading them: cheap when only the
    metadata (epoch, identity) is wanted.
    """
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} is damaged ({type(exc).__name__}: {detail}); delete it to restart that "
                        "run from scratch, or rerun with --force") from None


def resume_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run resumes from: the latest, or the previous one if a crash came between their renames."""
    latest = run_dir / CHECKPOINT
    return latest if latest.exists() or not (run_dir / PREVIOUS_CHECKPOINT).exists() else run_dir / PREVIOUS_CHECKPOINT


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint was written at (0 without one)."""
    ckpt = load_checkpoint(path, mmap=True)
    return ckpt["epoch"] if ckpt else 0


def checkpoint_identity(run_dir: Path) -> str | None:
    """The identity hash of the run whose checkpoint the folder holds (None: no checkpoint)."""
    ckpt = load_checkpoint(resume_checkpoint(run_dir), mmap=True)
    return ckpt.get("identity") if ckpt else None


def align_checkpoints(run_dirs: list[Path]) -> dict[Path, int]:
    """Roll runs of one variant back to a common epoch where their checkpoints allow it.

    A crash between two seeds' checkpoint writes leaves some seeds one epoch ahead; resuming
    them apart would train them in a different stacked group than an uninterrupted run.
    Returns the epoch each run now resumes from.
    """
    epochs = {d: checkpoint_epoch(resume_checkpoint(d)) for d in run_dirs}
    low = min(epochs.values(), default=0)
    for d, e in epochs.items():
        prev = d / PREVIOUS_CHECKPOINT
        if e > low and prev.exists() and checkpoint_epoch(prev) == low:
            os.replace(prev, d / CHECKPOINT)
            epochs[d] = low
        elif e > low == 0:  # the others have not finished one epoch: start this one afresh too
            (d / CHECKPOINT).unlink(missing_ok=True)
            prev.unlink(missing_ok=True)
            epochs[d] = 0
        elif e == low and not (d / CHECKPOINT).exists() and prev.exists():
            os.replace(prev, d / CHECKPOINT)
    return epochs
