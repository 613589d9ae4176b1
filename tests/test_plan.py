"""The plan by cost (issue 18): which variants share a stack, how stacks split over the workers, in which order.

The plan is counted from the study and pre-flight (cost.py), never timed, so the same study gets the same plan
across runs, resumes and retries; a planned stack's numbers are those of the same stack trained alone.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
import torch
from studies import digits_cnn, killed_then_resumed

import nnstudy
from nnstudy.data.study_data import load_study_data
from nnstudy.driver import cost
from nnstudy.driver import plan as plan_module
from nnstudy.driver.options import RunOptions
from nnstudy.driver.plan import plan_study, preflight
from nnstudy.driver.run_life import Run
from nnstudy.errors import UserError
from nnstudy.store.db import RunRow
from nnstudy.training import GroupTrainer, TrainOptions

STUDY = digits_cnn("planned", """
[variants.base]
[variants.xavier]
model.init = "xavier"
[variants.mse]
train.loss = "mse"
[variants.avg]
model.pool = "avg"
[variants.mlp]
model.kind = "mlp"
""", seeds=range(4))


def _plan(tmp_path, workers: int, todo=None, stack_variants="auto", text=STUDY):
    """The study's plan for `workers`, over runs standing as a store would hold them (no training)."""
    study = nnstudy.load_study(_write(tmp_path, text)).config
    options = RunOptions(cache_dir=tmp_path / "cache", stack_variants=stack_variants)
    stacking = preflight(study, options.cache, options, io.StringIO())
    runs, rid = [], 0
    for v, cfg in study.variants.items():
        for seed in study.seeds:
            rid += 1
            row = RunRow(rid, study.name, v, seed, f"h{rid}", cfg.model_dump(mode="json"), "pending",
                         tmp_path / "runs" / v / f"seed-{seed}", 0, None, None, None, {})
            runs.append(Run(row, str(row.run_dir)))
    plan = plan_study(runs, study, options, stacking, workers, "cpu", [2])
    left = runs if todo is None else [r for r in runs if todo(r)]
    jobs = plan.jobs(left)
    return plan, jobs


def _write(tmp_path, text: str = STUDY) -> Path:
    path = tmp_path / "planned.toml"
    path.write_text(text)
    return path


def _stacks(plan) -> list[list[tuple[str, int]]]:
    return [[(r.row.variant, r.row.seed) for r in s.runs] for s in plan.stacks]


def test_stacks_only_where_it_pays(tmp_path):
    one, jobs = _plan(tmp_path, workers=1)
    # init and loss variants share a stack (one forward for all: cheaper); avg pooling trains apart (a mixed
    # layer span costs more than it saves); the MLP is another network. One worker: nothing to balance.
    assert sorted(sorted({v for v, _ in s}) for s in _stacks(one)) == [["avg"], ["base", "mse", "xavier"], ["mlp"]]
    assert [j.cost for j in jobs] == sorted((j.cost for j in jobs), reverse=True)
    assert one.describe().startswith("plan for 1 worker(s), by estimated cost: ")
    assert "share" in jobs[0].plan_note and jobs[0].plan_note.startswith(jobs[0].label)


def test_a_stack_is_split_where_its_work_dominates_and_kept_whole_where_its_steps_do(tmp_path, monkeypatch):
    """Hand-made costs, so the answer is known both ways: a 12-run stack of heavy runs is split over two workers
    until neither idles for more than an epoch of the longest job; a stack whose steps' fixed overhead dominates is
    kept whole, since each half would pay that overhead again."""
    def with_costs(per_run: dict[str, float], per_step: float):
        monkeypatch.setattr(plan_module, "variant_costs", lambda study, stacking, cache_dir: (
            per_run, dict.fromkeys(per_run, per_step)))
        return _plan(tmp_path, workers=2)[0]

    heavy = with_costs({"base": 10.0, "xavier": 10.0, "mse": 10.0, "avg": 1.0, "mlp": 1.0}, per_step=0.1)
    shared = [s for s in heavy.stacks if {r.row.variant for r in s.runs} <= {"base", "mse", "xavier"}]
    assert len(shared) > 1 and all(len(s.runs) >= 2 for s in shared)  # every other run to each half
    assert sorted(key for s in shared for key in _stacks_of(s)) == sorted(
        (v, seed) for v in ("base", "xavier", "mse") for seed in range(4))
    epochs = nnstudy.load_study(_write(tmp_path)).config.variants["base"].train.epochs
    assert max(heavy.shares) - min(heavy.shares) <= max(s.cost for s in heavy.stacks) / epochs
    assert max(heavy.shares) <= 1.05 * sum(heavy.shares) / 2

    overhead_bound = with_costs(dict.fromkeys(("base", "xavier", "mse", "avg", "mlp"), 0.01), per_step=10.0)
    assert sorted(sorted({v for v, _ in s}) for s in _stacks(overhead_bound)) == [
        ["avg"], ["base", "mse", "xavier"], ["mlp"]]


def test_three_seeds_split_two_plus_one_a_cnn_alone_beside_a_copy(tmp_path, monkeypatch):
    """Hand-made costs, one variant's three seeds on two workers: [0, 2] + [1], the one trained as a stack of one, so
    no worker idles. An MLP (matrix products and per-value layers) trains alone at the cost of one run; a CNN (a
    grouped convolution at one group runs another algorithm) trains beside a copy of itself, priced as a stack of
    two, so it splits only while that still shortens the longest worker. A single-seed study trains on the plain
    path."""
    monkeypatch.setattr(plan_module, "variant_costs", lambda study, stacking, cache_dir: (
        dict.fromkeys(study.variants, 10.0), dict.fromkeys(study.variants, 0.1)))
    mlp = digits_cnn("planned", '[variants.mlp]\nmodel.kind = "mlp"\n', seeds=range(3))
    plan, jobs = _plan(tmp_path, workers=2, text=mlp)
    assert sorted(_stacks(plan)) == [[("mlp", 0), ("mlp", 2)], [("mlp", 1)]]
    assert all(s.stacked for s in plan.stacks) and all(j.stacked and j.train.stack_of_one for j in jobs)
    assert not any(s.beside_a_copy for s in plan.stacks) and max(plan.shares) < 2.1 * 10.0

    cnn = digits_cnn("planned", "[variants.base]\n", seeds=range(3))
    plan, jobs = _plan(tmp_path, workers=2, text=cnn)
    assert sorted(_stacks(plan)) == [[("base", 0), ("base", 2)], [("base", 1)]]
    one = next(s for s in plan.stacks if len(s.runs) == 1)
    # Priced as the stack of two it trains as: the same as its other half.
    assert one.beside_a_copy and one.cost == max(s.cost for s in plan.stacks) and "[seed 1 beside a copy]" in one.label
    assert all(j.stacked for j in jobs) and max(plan.shares) < 3 * 10.0

    # Three workers for two seeds of each of two CNNs: splitting one of them would put a copy's cost on the
    # third worker and shorten nothing, so both stay whole.
    two = digits_cnn("planned", '[variants.base]\n[variants.wide]\nmodel.channels = [16, 16]\n', seeds=range(2))
    plan, _ = _plan(tmp_path, workers=3, text=two)
    assert sorted(len(s.runs) for s in plan.stacks) == [2, 2]

    alone, jobs = _plan(tmp_path, workers=2, text=digits_cnn("planned", '[variants.mlp]\nmodel.kind = "mlp"\n',
                                                                seeds=[0]))
    assert _stacks(alone) == [[("mlp", 0)]] and not alone.stacks[0].stacked and not jobs[0].stacked


def _stacks_of(stack) -> list[tuple[str, int]]:
    return [(r.row.variant, r.row.seed) for r in stack.runs]


def test_the_plan_is_the_same_across_runs_resumes_and_retries(tmp_path):
    plan, jobs = _plan(tmp_path, workers=2)
    again, _ = _plan(tmp_path, workers=2)
    assert _stacks(again) == _stacks(plan) and again.describe() == plan.describe()
    stack_of = {r.id: i for i, s in enumerate(plan.stacks) for r in s.runs}
    for todo in (lambda r: r.row.seed >= 2, lambda r: r.row.variant in ("mse", "avg"), lambda r: r.id % 3 == 0):
        resumed, left = _plan(tmp_path, workers=2, todo=todo)  # a resume, or a retry of some runs
        assert resumed.describe() == plan.describe()
        for job in left:  # every job is a part of one planned stack
            assert len({stack_of[rid] for rid in job.run_ids}) == 1


def _stored(out: Path) -> dict:
    with sqlite3.connect(out / "nnstudy.db") as conn:
        rows = conn.execute("SELECT id, variant, seed FROM runs WHERE study='planned'").fetchall()
        return {(v, s): conn.execute("SELECT epoch, train_loss, train_acc, test_loss, test_acc, lr FROM epochs "
                                     "WHERE run=? ORDER BY epoch", (rid,)).fetchall() for rid, v, s in rows}


@pytest.mark.slow  # kills a study process mid-way and runs it again: two real runs of four jobs
def test_a_killed_study_resumes_on_its_plan_and_each_stack_equals_itself_trained_alone(tmp_path):
    """The study is killed mid-way (after its 5th checkpoint) and run again: the same plan both times, and every
    planned stack's numbers equal that stack trained alone, in this process."""
    killed, resumed = killed_then_resumed(_write(tmp_path), tmp_path, checkpoint=5)
    plan_line = [line for line in killed.stderr.splitlines() if ": plan for " in line]
    assert plan_line and plan_line == [line for line in resumed.stderr.splitlines() if ": plan for " in line]

    plan, _ = _plan(tmp_path, workers=2)
    assert plan_line[0].endswith(plan.describe())
    study = nnstudy.load_study(_write(tmp_path)).config
    stored = _stored(tmp_path / "out")
    for stack in plan.stacks:
        members = [study.variants[r.row.variant] for r in stack.runs]
        data = load_study_data(members[0], str(tmp_path / "cache"))
        alone = GroupTrainer(members[0], data, [r.row.seed for r in stack.runs],
                             TrainOptions(progress=False, vectorize=stack.stacked),
                             member_cfgs=members if len({r.row.variant for r in stack.runs}) > 1 else None)
        alone.fit(lambda tr, p: None)
        for k, r in enumerate(stack.runs):
            mine = [(e.epoch, e.train_loss, e.train_acc, e.test_loss, e.test_acc, e.lr) for e in alone.states[k].history]
            assert stored[(r.row.variant, r.row.seed)] == mine, (stack.label, r.row.variant, r.row.seed)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_run_is_in_exactly_one_stack(tmp_path, workers):
    plan, jobs = _plan(tmp_path, workers=workers)
    planned = [key for s in _stacks(plan) for key in s]
    assert sorted(planned) == sorted({(v, s) for v in ("base", "xavier", "mse", "avg", "mlp") for s in range(4)})
    assert sorted(rid for j in jobs for rid in j.run_ids) == list(range(1, 21))


def test_written_values_are_counted_and_views_are_not():
    """Pre-flight's memory count on hand-made networks: every value an operation writes, once, views none."""
    from torch import nn

    from nnstudy.training.preflight import _work_per_image

    def _elements_per_image(model, x):
        return _work_per_image(model, x)["elements_per_image"]

    x = torch.zeros(2, 1, 2, 2)
    # Flatten is a view (0); Linear writes 3 values, ReLU 3 more.
    assert _elements_per_image(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU()), x) == 6
    # An in-place ReLU still writes its 3 values; the network without it writes 3 fewer.
    assert _elements_per_image(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(inplace=True)), x) == 6
    assert _elements_per_image(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), x) == 3
    # Max pooling writes its maxima and their indices; average pooling only its means.
    assert _elements_per_image(nn.MaxPool2d(2), x) == 2
    assert _elements_per_image(nn.AvgPool2d(2), x) == 1


def test_equal_flops_can_cost_differently_and_steps_are_priced_per_stack():
    """Two runs with the same FLOPs: the one writing more values (or with more weights to step) costs more, by
    ELEMENT per value; the steps' fixed overhead is priced per stack step, whatever the stack's size."""
    assert cost.ELEMENT > 0 and cost.STEP > 0
    lean = cost.run_cost(10, 1e6, 0, 1e4, 60_000, 50_000, 10_000, 64)
    assert cost.run_cost(10, 1e6, 0, 3e4, 60_000, 50_000, 10_000, 64) - lean == pytest.approx(
        10 * cost.ELEMENT * 2e4 * (3 * 50_000 + 10_000))
    assert cost.run_cost(10, 1e6, 0, 1e4, 70_000, 50_000, 10_000, 64) - lean == pytest.approx(
        10 * cost.ELEMENT * cost.OPTIMISER_WRITES * 10_000 * 782)  # 782 steps of 64 images
    assert cost.step_cost(10, 50_000, 4) == 10 * 12_500 * cost.STEP


def test_stack_variants_always_never_or_as_the_cost_model_says(tmp_path):
    def stacks(mode):
        return sorted(sorted({v for v, _ in s}) for s in _stacks(_plan(tmp_path, 1, stack_variants=mode)[0]))

    assert stacks("always") == [["avg", "base", "mse", "xavier"], ["mlp"]]
    assert stacks("auto") == stacks(True) == [["avg"], ["base", "mse", "xavier"], ["mlp"]]
    assert stacks("never") == stacks(False) == [["avg"], ["base"], ["mlp"], ["mse"], ["xavier"]]
    with pytest.raises(UserError, match="stack_variants='sometimes': choose auto, always or never"):
        RunOptions(stack_variants="sometimes")
