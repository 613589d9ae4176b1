"""Planning: what to train, in which stacks, in which order. Who trains it is the executor's business.

Pre-flight checks every variant on one batch (and times one step of it); the
plan then groups the runs left to train into jobs by the stacking rules
(training/stacking.py, which the trainer reads too), splits stacks so that no
worker idles, and orders the jobs most expensive first. It depends only on the
study, the pre-flight and the worker count, never on what is left to train, so
a run trains in the same stack when the study is resumed, retried or run again.
"""

from __future__ import annotations

import json

from nnstudy.config import StudyConfig
from nnstudy.executors.job import Job, load_study_data
from nnstudy.run_life import Run, start_epochs
from nnstudy.training import TrainOptions
from nnstudy.training.preflight import check_variant
from nnstudy.training.stacking import stack_key


def preflight(study: StudyConfig, cache_dir, options, log) -> dict:
    """Check every variant on one batch before anything trains; say once which cannot stack its seeds."""
    stacking, step_seconds = {}, {}
    for name, cfg in study.variants.items():
        result = check_variant(name, cfg, load_study_data(cfg, str(cache_dir)),
                               stack=options.vectorize and len(study.seeds) > 1)
        # One architecture, one step cost: timing noise must not reorder variants that cost the same.
        same = json.dumps([cfg.model.model_dump(mode="json", exclude={"init", "init_value"}), cfg.train.batch_size])
        result.step_seconds = step_seconds.setdefault(same, result.step_seconds)
        stacking[name] = result
        if not result.stackable:
            print(f"{study.name}: variant {name}: {result.why_not}", file=log)
    return stacking


def plan_jobs(todo: list[Run], study_runs: list[Run], study: StudyConfig, report_epochs: list[int], cache_dir,
              device: str, options, stacking: dict, slots: int) -> list[Job]:
    """The runs left to train (`todo`) as jobs, most expensive first.

    A stack holds the seeds of one variant, and with `stack_variants` the runs of
    every variant with the same stack key (training/stacking.py); runs of a stack
    that stand at different epochs (resumed) train apart. The order is by
    estimated cost (one step's measured time x steps left x runs), so the
    longest job never starts last.
    """
    stacks = {v: options.vectorize and stacking[v].stackable for v in study.variants}
    together = {v: stack_key(cfg, stacking[v].structure) if options.stack_variants else v
                for v, cfg in study.variants.items()}
    stack_of = split_stacks(study_runs, together, stacks, slots)
    pieces = {stack_of[r.id] for r in todo if stacks[r.row.variant]}
    starts = start_epochs([[r for r in todo if stacks[r.row.variant] and stack_of[r.id] == p] for p in pieces],
                          [r for r in todo if not stacks[r.row.variant]])
    groups: dict[tuple, list[Run]] = {}
    for run in todo:
        key = (stack_of[run.id], starts[run.id]) if stacks[run.row.variant] else (run.row.variant, run.row.seed)
        groups.setdefault(key, []).append(run)
    jobs = [_job(runs, study, report_epochs, cache_dir, device, options, stacking, stacks,
                 start if isinstance(start, int) else 0) for (_, start), runs in groups.items()]
    return sorted(jobs, key=lambda j: -j.cost)


def _job(runs: list[Run], study: StudyConfig, report_epochs, cache_dir, device: str, options, stacking: dict,
         stacks: dict, start: int) -> Job:
    variants = list(dict.fromkeys(r.row.variant for r in runs))
    lead = study.variants[variants[0]]
    mixed = len(variants) > 1
    job = Job(
        study=study.name, variant="+".join(variants), config=lead.model_dump(mode="json"),
        run_ids=[r.id for r in runs], seeds=[r.row.seed for r in runs], identities=[r.row.config_hash for r in runs],
        checkpoint_dirs=[r.checkpoint_dir for r in runs], report_epochs=report_epochs, cache_dir=str(cache_dir),
        train=TrainOptions(device=device, vectorize=stacks[variants[0]], compile=options.compile,
                           progress=options.progress, probes=options.probes),
        stack_note=stacking[variants[0]].why_not or "",
        member_configs=[study.variants[r.row.variant].model_dump(mode="json") for r in runs] if mixed else [],
        member_variants=[r.row.variant for r in runs] if mixed else [],
    )
    steps = -(-load_study_data(lead, str(cache_dir)).train_x.shape[0] // lead.train.batch_size)
    left = lead.train.epochs - (start if stacks[variants[0]] else 0)
    job.cost = max(stacking[v].step_seconds for v in variants) * steps * left * len(runs)
    return job


def split_stacks(study_runs: list[Run], together: dict, stacks: dict, slots: int) -> dict:
    """run id -> its stack: runs whose variants share a stack key, split so that no worker idles.

    With fewer stacks than workers, the stack with the most runs is split in two, every
    other run to each half (so each gets its share of every variant's cost), while both
    halves keep two runs or more. Decided over all the study's runs, never by timing
    or by what is left to train, so a run trains in the same stack when the study is
    resumed, retried or run again: its numbers do not change.
    """
    pieces: dict[str, list] = {}
    for r in study_runs:
        if stacks[r.row.variant]:
            pieces.setdefault(together[r.row.variant], []).append(r.id)
    pieces = list(pieces.values())
    alone = sum(not stacks[r.row.variant] for r in study_runs)
    while len(pieces) + alone < slots:
        big = max(pieces, key=len, default=[])
        if len(big) < 4:
            break
        i = pieces.index(big)
        pieces[i:i + 1] = [big[0::2], big[1::2]]
    return {run_id: i for i, piece in enumerate(pieces) for run_id in piece}
