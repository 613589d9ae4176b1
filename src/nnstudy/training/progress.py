"""A progress bar per epoch (epoch, step, loss, images/s), quiet when not on a terminal."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

# Reading the loss forces a device sync; do it a few times a second at most.
_REFRESH_STEPS = 50


class EpochProgress:
    def __init__(self, label: str, epoch: int, epochs: int, steps: int, images_per_step: int, enabled: bool = True,
                 position: int = 0):
        self.images_per_step = images_per_step
        self.start = time.perf_counter()
        self.count = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=steps, desc=f"{label} epoch {epoch}/{epochs}", leave=False, unit="step", dynamic_ncols=True,
                            position=position)

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
