"""How to run a study (never what): one value, built once at the edge (the CLI, the API) and passed down.

The planner reads it to plan, the executors to place jobs; a job gets only the
part its trainer needs (`training.TrainOptions`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from nnstudy.errors import UserError


@dataclass
class RunOptions:
    out: Path = Path("nnstudy-out")
    device: str | None = None  # None: CUDA when available, else CPU
    executor: str = "auto"  # auto, or a registered executor (registry.EXECUTORS: local | process | ray)
    workers: int | None = None
    vectorize: bool = True
    compile: bool = False
    force: bool = False
    retry_failed: bool = False
    cache_dir: Path | None = None
    ray_address: str | None = None  # implies executor ray
    cpus_per_job: float | None = None  # Ray: CPUs each job asks for, and its torch threads; None: 1
    gpus_per_job: float | None = None  # Ray: GPUs each job asks for (fractions share one); None: 1 on cuda, else 0
    checkpoint_dir: str | None = None  # None: each run's folder; else a folder or URI that every node reaches
    # Variants that differ only in values (init, loss, activation...) may share a stack: "auto" where the plan's cost
    # model says it pays, "always" wherever they can, "never" (True and False mean auto and never).
    stack_variants: bool | str = "auto"
    share_cores: bool = False  # process pool: running jobs take the cores of finished ones (last-bit CPU differences)
    progress: bool = True
    probes: bool = True  # mechanism probes per epoch (training/probes.py); they never change the numbers
    log: object = field(default=None, repr=False)  # None: sys.stderr at run time (not at import)

    @classmethod
    def from_keywords(cls, out, **options) -> "RunOptions":
        """The options of `Study.run(out, **options)`: an unknown name is one line with close matches."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "out"]
        for name in options:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=2)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise UserError(f"Study.run got an unknown option {name!r}; {hint}choose from: {', '.join(names)}")
        if "cache_dir" in options:
            options["cache_dir"] = Path(options["cache_dir"]) if options["cache_dir"] else None
        if "checkpoint_dir" in options:
            options["checkpoint_dir"] = str(options["checkpoint_dir"]) if options["checkpoint_dir"] else None
        return cls(out=Path(out), **options)

    def __post_init__(self):
        stacking = {True: "auto", False: "never", "auto": "auto", "always": "always", "never": "never"}
        if not isinstance(self.stack_variants, (bool, str)) or self.stack_variants not in stacking:
            raise UserError(f"stack_variants={self.stack_variants!r}: choose auto, always or never "
                            "(True means auto, False never)")
        self.stack_variants = stacking[self.stack_variants]

    @property
    def cache(self) -> Path:
        """Where decoded datasets are cached: --cache-dir, $NNSTUDY_CACHE or ~/.cache/nnstudy."""
        return Path(self.cache_dir or os.environ.get("NNSTUDY_CACHE") or Path.home() / ".cache" / "nnstudy")


def resolve_device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu (or leave --device out)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: choose cpu or cuda")
    return name
