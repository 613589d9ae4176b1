"""How many CPU threads a training job should use.

At the reference protocol's batch size of 4 every kernel is tiny, and waking a
second thread costs more than it saves: model A trains at ~4,200 images/s on
one thread of this project's 2-core machine and ~3,100 on two. Five seeds
stacked (20 images a step) already gain from the second thread: ~10,000
against ~9,100 images/s (bench/tutorial_vs_nnstudy.py, bench/seeds.py).
"""

from __future__ import annotations

import os

# Images per optimiser step (batch size x stacked seeds) below which one thread is faster.
SMALL_STEP_IMAGES = 16


def default_cpu_threads(images_per_step: int, cores: int | None = None) -> int:
    """One thread for a small step, else all `cores` (default: every core of the machine)."""
    return 1 if images_per_step < SMALL_STEP_IMAGES else max(1, cores or os.cpu_count() or 1)
