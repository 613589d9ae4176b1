"""What a run, a stack and a worker's share cost: counted from the study and pre-flight, never timed.

A cost is in FLOP-equivalents: the FLOPs of matrix products and convolutions,
plus the values every operation writes (pooling, activations and the
optimiser's pass over the weights are bound by memory, not arithmetic) and a
fixed price per step (one Python pass through the stacked network, paid once
by a stack, not by each member). The two prices are fitted once by
bench/cost_model.py and fixed here.

The plan decides with these numbers which variants share a stack, how stacks are
split and in which order jobs start. Timing would make that depend on the
machine's load, and a run trained in another stack can differ in the last bits;
counting keeps the same plan for the same study and worker count, resumed or not.
"""

from __future__ import annotations

import math

# A training step's backward pass costs about twice its forward (two products per weight instead of one).
BACKWARD = 2.0
# What a stack of several variants costs against the same runs trained apart (each still its seeds stacked),
# by the kind of difference between its members. One forward for all members pays where they differ only in
# values: mnist-init's MLP variants trained 9% faster stacked. A mixed layer span (activation or pooling) cuts the
# stack's channels per member and joins them again: cifar10-pooling's pooling variants were 15% slower stacked
# than apart on one core (issue 18), mnist-activations' whole study 7% slower with its activations stacked
# (bench/study.py --stacking; bench/README.md). Each kind of layers in a stack also pays the steps' overhead.
SHARED = 0.91
MIXED_SPAN = 1.15
# Fitted by bench/cost_model.py on one core of the Intel Xeon this project is measured on (bench/README.md): a FLOP of
# a convolution costs as much time as CONV FLOPs of a matrix product, a value written as ELEMENT, a step's fixed
# overhead as STEP. Fixed, so the plan never varies.
CONV = 4.3
ELEMENT = 32.0
STEP = 2.4e8
# Values an optimiser step writes per weight: its gradient, its momentum and the weight itself.
OPTIMISER_WRITES = 3


def run_cost(epochs: int, flops_per_image: float, conv_flops_per_image: float, elements_per_image: float, params: int,
             n_train: int, n_test: int, batch_size: int) -> float:
    """One run's FLOP-equivalents, without its steps' fixed overhead (`step_cost`, paid once per stack): every epoch,
    forward and backward over the training images, forward over the test images, an optimiser pass per step."""
    per_image = flops_per_image + (CONV - 1) * conv_flops_per_image + ELEMENT * elements_per_image
    steps = math.ceil(n_train / batch_size)
    return epochs * (per_image * ((1 + BACKWARD) * n_train + n_test) + ELEMENT * OPTIMISER_WRITES * params * steps)


def step_cost(epochs: int, n_train: int, batch_size: int) -> float:
    """The fixed overhead of a stack's training steps, whatever its size."""
    return epochs * math.ceil(n_train / batch_size) * STEP


def stack_factor(n_variants: int, n_layer_kinds: int) -> float:
    """A stack's cost over the sum of its runs': MIXED_SPAN with members of different layers, SHARED with several
    variants of the same layers, 1 for the seeds of one variant."""
    if n_layer_kinds > 1:
        return MIXED_SPAN
    return SHARED if n_variants > 1 else 1.0


def gflop(flops: float) -> str:
    return f"{flops / 1e9:,.3g} GFLOP" if flops < 1e12 else f"{flops / 1e12:,.3g} TFLOP"
