"""What trains stacked with what: the rules the planner and the trainer both read.

Seeds of one variant train as one stacked model unless the model draws from
the global random stream (dropout: `can_stack`). Runs of different variants
share a stack when their configs differ only in values (`VALUE_KEYS`), not in
the shapes of their weights or in their training steps; inside a stack each
member keeps its own layers, loss and optimiser settings, grouped by the keys
below (members stand in variant order, so equal members are neighbours).
"""

from __future__ import annotations

import itertools
import json

# Keys that may differ between the members of one stack: they change values, not steps. Activation and pooling
# change layers without weights (a member's own layers between two weight layers); the planner still checks that
# the members' weights have equal shapes (pre-flight's `structure`).
LOSS_KEYS = {"loss", "label_smoothing", "loss_args"}
LAYER_KEYS = {"activation", "negative_slope", "pool"}
# Train keys an optimiser or schedule reads: members differing in them get one optimiser per run of equal members.
HYPERPARAMETERS = {"lr", "momentum", "nesterov", "weight_decay", "schedule", "step_size", "gamma", "warmup_epochs"}
VALUE_KEYS = {"model": {"init", "init_value"} | LAYER_KEYS, "train": LOSS_KEYS | HYPERPARAMETERS}


def can_stack(cfg) -> bool:
    """Whether several seeds of this config can train as one stacked model.

    Dropout draws its masks from the global RNG, which cannot be split per seed
    inside one stacked step: such models train one seed at a time, so a seed
    still fixes its whole run.
    """
    return cfg.model.dropout == 0


def trains_stacked(cfg, n_seeds: int, vectorize: bool, stack_of_one: bool = False) -> bool:
    """The one rule for whether `n_seeds` seeds of `cfg` train as one stacked model: stacking is on (no
    --no-vectorize), there is more than one seed (or one, as a piece of a planned stack: `stack_of_one`), and the
    model can stack (`can_stack`). The planner, the job and the trainer all ask here.

    A lone run alone takes the plain network's path, which rounds differently from the stacked one; a piece of a
    stack split by the plan (or resumed apart from its stack-mates) keeps the stacked path as a stack of one, so
    its numbers do not depend on how the plan split its stack."""
    return vectorize and (n_seeds > 1 or stack_of_one) and can_stack(cfg)


def stack_key(cfg, structure: str = "") -> str:
    """Variants with equal keys can train as one stack: they differ only in VALUE_KEYS, and their networks have
    the same `structure` (pre-flight's weight names and shapes)."""
    return json.dumps(cfg.model_dump(mode="json", exclude=VALUE_KEYS), sort_keys=True) + structure


def loss_key(t) -> str:
    """Members with equal keys share one loss call."""
    return json.dumps(t.model_dump(include=LOSS_KEYS), sort_keys=True)


def optimizer_key(t) -> str:
    """Members with equal keys share one optimiser (over their slice of the stack)."""
    return json.dumps(t.model_dump(mode="json", include=HYPERPARAMETERS | {"optimizer"}), sort_keys=True)


def member_runs(keys: list) -> list[tuple[int, int]]:
    """[(start, stop)] over runs of consecutive stack members with equal keys (members are in variant order)."""
    runs, start = [], 0
    for _, run in itertools.groupby(keys):
        stop = start + len(list(run))
        runs.append((start, stop))
        start = stop
    return runs


def member_groups(keys: list) -> list[list[int]]:
    """Member indices with equal keys, in order of first appearance (a group need not be one run)."""
    groups: dict = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    return list(groups.values())
