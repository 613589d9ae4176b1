"""Planning: what to train, in which stacks, in which order. Who trains it is the executor's business.

Pre-flight checks every variant on one batch and counts its work (FLOPs,
values written, weights: cost.py prices them); the plan then groups the runs
into stacks by the stacking rules (training/stacking.py, which the trainer
reads too) where that is priced cheaper, splits stacks so that no worker
idles, and orders the jobs most expensive first. It depends only on the
study, the pre-flight and the worker count, never on what is left to train, so
a run trains in the same stack when the study is resumed, retried or run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nnstudy.config import StudyConfig
from nnstudy.data.study_data import load_study_data
from nnstudy.driver.cost import gflop, run_cost, stack_factor, step_cost
from nnstudy.driver.options import RunOptions
from nnstudy.driver.pool import first_free
from nnstudy.driver.run_life import Run, start_epochs
from nnstudy.executors.job import Job, JobRun
from nnstudy.training import TrainOptions
from nnstudy.training.preflight import check_variant
from nnstudy.training.stacking import LAYER_KEYS, stack_key


def preflight(study: StudyConfig, cache_dir, options, log) -> dict:
    """Check every variant on one batch before anything trains; say once which cannot stack its seeds."""
    stacking = {}
    for name, cfg in study.variants.items():
        stacking[name] = check_variant(name, cfg, load_study_data(cfg, str(cache_dir)),
                                       stack=options.vectorize and len(study.seeds) > 1)
        if not stacking[name].stackable:
            print(f"{study.name}: variant {name}: {stacking[name].why_not}", file=log)
    return stacking


@dataclass
class Stack:
    """Runs planned to train as one job (when they stand at the same epoch), on one worker."""

    runs: list[Run]
    cost: float  # estimated FLOP-equivalents (cost.py), the whole stack from scratch
    stacked: bool  # False: one run, its seeds not stackable (or --no-vectorize)
    worker: int = 0
    beside_a_copy: bool = False  # one run, stacked beside a copy of itself (Preflight.beside_a_copy)

    @property
    def label(self) -> str:
        variants = list(dict.fromkeys(r.row.variant for r in self.runs))
        if len(variants) > 1:
            return f"{'+'.join(variants)} [{len(self.runs)} runs]"
        copy = " beside a copy" if self.beside_a_copy else ""
        return f"{variants[0]} [seed {','.join(str(r.row.seed) for r in self.runs)}{copy}]"


@dataclass
class StudyPlan:
    """Every run of the study in a stack, the stacks most expensive first, each on a worker; and what a job of the
    study needs beyond its runs (the study, its pre-flight, how and where it trains), so that `jobs` turns any runs
    left into jobs of this plan."""

    study: StudyConfig
    stacking: dict  # variant -> its Preflight
    options: RunOptions
    device: str
    report_epochs: list[int]
    stacks: list[Stack]
    workers: int
    shares: list[float] = field(default_factory=list)  # each worker's estimated FLOPs

    def stack_of(self, run: Run) -> int:
        return next(i for i, s in enumerate(self.stacks) if any(r.id == run.id for r in s.runs))

    def describe(self) -> str:
        """The plan in one line: jobs with their estimated cost and worker, each worker's share."""
        ideal = sum(self.shares) / len(self.shares)
        jobs = "; ".join(f"{s.label} {gflop(s.cost)} (worker {s.worker + 1})" for s in self.stacks)
        return (f"plan for {self.workers} worker(s), by estimated cost: {jobs}; workers' shares "
                f"{', '.join(gflop(x) for x in self.shares)} (longest {max(self.shares) / ideal:.2f}x total/workers)")

    def note(self, i: int) -> str:
        """Stack i's part of the plan, as each of its runs records it."""
        s = self.stacks[i]
        return (f"{s.label}, est. {gflop(s.cost)}; worker {s.worker + 1} of {self.workers}, its share "
                f"{gflop(self.shares[s.worker])} of {gflop(sum(self.shares))}")

    def jobs(self, todo: list[Run]) -> list[Job]:
        """The runs left to train (`todo`) as jobs, in the plan's order. Runs of a stack that stand at different
        epochs (resumed) train apart."""
        stack_of = {r.id: self.stack_of(r) for r in todo}
        stacked = {r.id: self.stacks[stack_of[r.id]].stacked for r in todo}
        pieces = {stack_of[r.id] for r in todo if stacked[r.id]}
        starts = start_epochs([[r for r in todo if stacked[r.id] and stack_of[r.id] == p] for p in sorted(pieces)],
                              [r for r in todo if not stacked[r.id]])
        groups: dict[tuple, list[Run]] = {}
        for run in todo:
            groups.setdefault((stack_of[run.id], starts[run.id] if stacked[run.id] else 0), []).append(run)
        return sorted((self._job(runs, i, start) for (i, start), runs in groups.items()), key=lambda j: -j.cost)

    def _job(self, runs: list[Run], i: int, start: int) -> Job:
        study, options, stack = self.study, self.options, self.stacks[i]
        variants = list(dict.fromkeys(r.row.variant for r in runs))
        lead = study.variants[variants[0]]
        mixed = len(variants) > 1
        return Job(
            study=study.name, variant="+".join(variants), config=lead.model_dump(mode="json"),
            runs=[JobRun(r.id, r.row.seed, r.row.variant, r.row.config_hash, r.checkpoint_dir,
                         study.variants[r.row.variant].model_dump(mode="json") if mixed else None) for r in runs],
            report_epochs=self.report_epochs, cache_dir=str(options.cache),
            eval_epochs=sorted(set(self.report_epochs) | {c.epoch for c in study.claims if c.epoch is not None}),
            train=TrainOptions(device=self.device, vectorize=stack.stacked, stack_of_one=stack.stacked,
                               compile=options.compile, progress=options.progress, probes=options.probes),
            stack_note=self.stacking[variants[0]].why_not or "",
            # Its share of the stack's estimated cost: what is left of it, for the order and the time left.
            cost=stack.cost * len(runs) / len(stack.runs) * (lead.train.epochs - start) / lead.train.epochs,
            plan_note=self.note(i),
        )


def plan_study(study_runs: list[Run], study: StudyConfig, options: RunOptions, stacking: dict, workers: int,
               device: str = "cpu", report_epochs: list[int] = ()) -> StudyPlan:
    """Which runs share a stack, how stacks are split over `workers`, and their order, by the cost model (cost.py).

    Variants with the same stack key (training/stacking.py) share a stack where that is estimated to cost less
    than training them apart (never for members of different layers); a stack is split in two, every other run
    to each half, while that shortens the longest worker's share. Decided over all the study's runs.
    """
    costs, overhead = variant_costs(study, stacking, options.cache)
    stackable = {v: options.vectorize and stacking[v].stackable for v in study.variants}
    key = _stack_keys(study, stacking, costs, overhead, options.stack_variants)
    pieces: dict[str, list[Run]] = {}
    alone = []
    for run in study_runs:
        if stackable[run.row.variant]:
            pieces.setdefault(key[run.row.variant], []).append(run)
        else:
            alone.append([run])
    # A lone seed (a study of one seed) takes the plain path; only a piece split off a stack trains as one.
    stacks = ([Stack(p, _cost(p, costs, overhead), len(p) > 1) for p in pieces.values()]
              + [Stack(p, _cost(p, costs, overhead), False) for p in alone])
    stacks = _balance(stacks, costs, overhead, workers, stacking)
    stacks.sort(key=lambda s: (-s.cost, min(r.id for r in s.runs)))
    where, load = first_free([s.cost for s in stacks], workers)
    for s, w in zip(stacks, where):
        s.worker = w
    return StudyPlan(study, stacking, options, device, list(report_epochs), stacks, workers, load)


def variant_costs(study: StudyConfig, stacking: dict, cache_dir) -> tuple[dict[str, float], dict[str, float]]:
    """Each variant's cost of one run (cost.run_cost) and of its steps' fixed overhead (cost.step_cost)."""
    costs, overhead = {}, {}
    for v, cfg in study.variants.items():
        n_train, n_test = _sizes(cfg, cache_dir)
        p = stacking[v]
        costs[v] = run_cost(cfg.train.epochs, p.flops_per_image, p.conv_flops_per_image, p.elements_per_image,
                            p.params, n_train, n_test, cfg.train.batch_size)
        overhead[v] = step_cost(cfg.train.epochs, n_train, cfg.train.batch_size)
    return costs, overhead


def _sizes(cfg, cache_dir) -> tuple[int, int]:
    data = load_study_data(cfg, str(cache_dir))
    return int(data.train_x.shape[0]), int(data.test_x.shape[0])


def _layers(model: dict) -> str:
    """What a member's layers without weights are (its activation and pooling)."""
    return json.dumps({k: model[k] for k in sorted(LAYER_KEYS)})


def _cost(runs: list[Run], costs: dict[str, float], overhead: dict[str, float]) -> float:
    return _priced([r.row.variant for r in runs], len({_layers(r.row.config["model"]) for r in runs}), costs, overhead)


def _priced(variants: list[str], kinds: int, costs: dict[str, float], overhead: dict[str, float]) -> float:
    """A stack's estimated cost, its runs given by their variants (one entry a run): their costs, by what stacking
    them saves or adds (cost.stack_factor), and the steps' fixed overhead once for each of its `kinds` of layers
    (each kind runs its own layers in every step; members share batch size, epochs and data, so any member's)."""
    return (sum(costs[v] for v in variants) * stack_factor(len(set(variants)), kinds)
            + overhead[variants[0]] * kinds)


def _stack_keys(study: StudyConfig, stacking: dict, costs: dict[str, float], overhead: dict[str, float],
                stack_variants: str) -> dict:
    """variant -> the key of its stack: the stacking rules' key, with its layers added where a stack of mixed
    layers is estimated to cost more than its parts apart."""
    if stack_variants == "never":
        return {v: v for v in study.variants}
    key = {v: stack_key(cfg, stacking[v].structure) for v, cfg in study.variants.items()}
    n = len(study.seeds)
    for k in set(key.values()):
        variants = [v for v in study.variants if key[v] == k]
        parts = {}
        for v in variants:
            parts.setdefault(_layers(study.variants[v].model.model_dump(mode="json")), []).append(v)
        together = _priced([v for v in variants for _ in range(n)], len(parts), costs, overhead)
        apart = sum(_priced([v for v in part for _ in range(n)], 1, costs, overhead) for part in parts.values())
        if apart < together and stack_variants == "auto":
            for v in variants:
                key[v] = k + _layers(study.variants[v].model.model_dump(mode="json"))
    return key


def _balance(stacks: list[Stack], costs: dict[str, float], overhead: dict[str, float], workers: int,
             stacking: dict) -> list[Stack]:
    """Split a stack in two (every other run to each half, so each gets its share of every variant) while that
    shortens the longest worker's share.

    A half holds at least two runs, or one where its network trains the same as a stack of one
    (`Preflight.same_alone`: then 3 seeds on 2 workers split 2 + 1); a half of one run that trains beside a copy
    of itself (`Preflight.beside_a_copy`) is priced as the stack of two it is. A run never leaves
    the stacked path for the plain network's: that rounds differently (a check on a cut of the data passed while
    the full run then differed by 6e-8 in a loss at epoch 2; Intel Xeon, session 18), so a run's numbers would
    depend on the plan."""
    def longest(candidate: list[Stack]) -> float:
        return max(first_free(sorted((s.cost for s in candidate), reverse=True), workers)[1])

    def smallest_half(s: Stack) -> int:
        return 1 if all(stacking[r.row.variant].same_alone for r in s.runs) else 2

    def half(runs: list[Run]) -> Stack:
        copy = len(runs) == 1 and stacking[runs[0].row.variant].beside_a_copy
        return Stack(runs, _cost(runs * 2 if copy else runs, costs, overhead), True, beside_a_copy=copy)

    while True:
        now = longest(stacks)
        for s in sorted((s for s in stacks if s.stacked and len(s.runs) >= 2 * smallest_half(s)),
                        key=lambda s: -s.cost):
            halves = [half(s.runs[0::2]), half(s.runs[1::2])]
            trial = [t for t in stacks if t is not s] + halves
            if longest(trial) < now * (1 - 1e-9):
                stacks = trial
                break
        else:
            return stacks
