"""What a run, a stack and a worker's share cost: counted from the study and pre-flight, never timed.

The plan decides with these numbers which variants share a stack, how stacks are
split and in which order jobs start. Timing would make that depend on the
machine's load, and a run trained in another stack can differ in the last bits;
counting keeps the same plan for the same study and worker count, resumed or not.
"""

from __future__ import annotations

import heapq

# A training step's backward pass costs about twice its forward (two products per weight instead of one).
BACKWARD = 2.0
# What a stack of several variants costs against the same runs trained apart (each still its seeds stacked),
# by the kind of difference between its members. One forward for all members pays where they differ only in
# values: mnist-init's MLP variants trained 9% faster stacked. A mixed layer span (activation or pooling) cuts the
# stack's channels per member and joins them again: cifar10-pooling's pooling variants were 15% slower stacked
# than apart on one core (issue 18; bench/study.py).
SHARED = 0.91
MIXED_SPAN = 1.15


def run_cost(epochs: int, flops_per_image: float, n_train: int, n_test: int) -> float:
    """FLOPs of one run: every epoch, forward and backward over the training images, forward over the test images."""
    return epochs * flops_per_image * ((1 + BACKWARD) * n_train + n_test)


def stack_factor(n_variants: int, n_layer_kinds: int) -> float:
    """A stack's cost over the sum of its runs': MIXED_SPAN with members of different layers, SHARED with several
    variants of the same layers, 1 for the seeds of one variant."""
    if n_layer_kinds > 1:
        return MIXED_SPAN
    return SHARED if n_variants > 1 else 1.0


def shares(costs: list[float], workers: int) -> tuple[list[int], list[float]]:
    """Jobs in the order given (most expensive first) onto whichever worker frees up first, as a pool takes them:
    (each job's worker, each worker's share). Ties go to the lower-numbered worker, so the answer never varies."""
    free = [(0.0, w) for w in range(max(1, workers))]
    heapq.heapify(free)
    where, load = [], [0.0] * max(1, workers)
    for c in costs:
        total, w = heapq.heappop(free)
        where.append(w)
        load[w] = total + c
        heapq.heappush(free, (load[w], w))
    return where, load


def gflop(flops: float) -> str:
    return f"{flops / 1e9:,.3g} GFLOP" if flops < 1e12 else f"{flops / 1e12:,.3g} TFLOP"
