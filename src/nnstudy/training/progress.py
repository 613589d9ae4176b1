"""Progress bars: per epoch (epoch, step, loss, images/s), on a terminal or as a Jupyter widget.

Bars use tqdm's auto mode: a widget in a notebook (with ipywidgets), text on
a terminal. Anywhere else (a log file, CI, nohup) no bar is drawn; the
runner prints one plain line per finished epoch instead.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

# Reading the loss forces a device sync; do it a few times a second at most.
_REFRESH_STEPS = 50


def in_notebook() -> bool:
    """True inside a Jupyter kernel, whose stderr is no terminal but shows a widget bar."""
    ipython = sys.modules.get("IPython")  # never imported here: only a kernel has loaded it
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bars_shown(enabled: bool = True) -> bool:
    """Whether to draw progress bars: asked for, and someone watches (a terminal or a notebook)."""
    return enabled and (sys.stderr.isatty() or in_notebook())


def progress_bar(**kwargs):
    """A tqdm bar in auto mode (a notebook widget, or text on a terminal); keywords as tqdm's."""
    return tqdm(**kwargs)


class EpochProgress:
    def __init__(self, label: str, epoch: int, epochs: int, steps: int, images_per_step: int, enabled: bool = True,
                 position: int = 0):
        self.images_per_step = images_per_step
        self.start = time.perf_counter()
        self.count = 0
        self.bar = None
        if bars_shown(enabled):
            self.bar = progress_bar(total=steps, desc=f"{label} epoch {epoch}/{epochs}", leave=False, unit="step",
                                    dynamic_ncols=True, position=position)

    def step(self, losses) -> None:
        self.count += 1
        if self.bar is None or self.count % _REFRESH_STEPS:
            return
        rate = self.count * self.images_per_step / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(loss=f"{float(losses.mean()):.4f}", img_s=f"{rate:,.0f}", refresh=False)
        self.bar.update(_REFRESH_STEPS)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
