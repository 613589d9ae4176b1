"""Each extension point is one registration in one file: a pooling, a probe, a report section and an executor,
each added here and run end to end on a tiny digits study."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

import pytest
from torch import nn

import nnstudy
from nnstudy.executors import Executor, execute_job
from nnstudy.executors.events import JobEnded
from nnstudy.registry import EXECUTORS, POOLINGS, PROBES, REPORT_SECTIONS


def _study(**variants):
    return nnstudy.load_study({
        "name": "ext", "seeds": [0, 1],
        "dataset": {"name": "digits", "subset": 200, "test_subset": 80},
        "model": {"kind": "cnn", "channels": [4], "kernel": 3, "padding": 1, "hidden": [16]},
        "train": {"lr": 0.05, "batch_size": 32, "epochs": 2},
        "variants": {"base": {}, **variants},
    })


def _run(study, tmp_path, **options):
    options = {"executor": "local", "progress": False, "log": io.StringIO(), **options}
    return study.run(tmp_path / "out", cache_dir=tmp_path / "cache", **options)


@contextmanager
def registered(registry, name, *args, **meta):
    registry.register(name, *args, **meta)
    try:
        yield
    finally:
        registry.remove(name)


class HalfMaxHalfAvg(nn.Module):
    """Half max pooling, half average pooling: acts on each channel alone."""

    def __init__(self, size: int):
        super().__init__()
        self.max, self.avg = nn.MaxPool2d(size), nn.AvgPool2d(size)

    def forward(self, x):
        return 0.5 * (self.max(x) + self.avg(x))


def test_a_pooling_is_one_registration(tmp_path):
    with registered(POOLINGS, "half", HalfMaxHalfAvg, per_channel=True, module=HalfMaxHalfAvg):
        study = _study(half={"model": {"pool": "half"}})
        results = _run(study, tmp_path)
        assert set(results.runs()["status"]) == {"done"} and results.report.exists()
        # Its seeds train stacked; a stack mixing it with the baseline's pooling would cost more than the two
        # apart (cost.MIXED_SPAN), so the plan keeps them apart ...
        assert {r.settings.get("plan", "").split(", est.")[0] for r in results.study.runs} == {
            "base [seed 0,1]", "half [seed 0,1]"}
        # ... but the stacked engine takes it in a mixed stack too: each member through its own pooling.
        from nnstudy.data.study_data import load_study_data
        from nnstudy.training import GroupTrainer, TrainOptions

        base, half = study.config.variants["base"], study.config.variants["half"]
        mixed = GroupTrainer(base, load_study_data(base, str(tmp_path / "cache")), [0, 1],
                             TrainOptions(progress=False), member_cfgs=[base, half])
        assert mixed.stack.stacked and mixed.stack.mixed
        mixed.fit(lambda tr, p: None)
        by_seed = {r.variant: r for r in results.study.runs if r.seed == 1}
        assert mixed.states[1].history[-1].test_acc == by_seed["half"].history[-1].test_acc


def test_a_probe_is_one_registration(tmp_path):
    spec = {"kind": "depth", "file": "l1-depth.png", "axis": "mean |weight|", "title": "Mean absolute weight"}
    with registered(PROBES, "l1", lambda layer: float(layer.weight.detach().abs().mean()), per="weight",
                    label="mean absolute weight", figure=spec):
        results = _run(_study(), tmp_path)
        from nnstudy.report.probe_figures import mechanism_figures

        for run in results.study.runs:
            assert sorted(run.probes) == [0, 1, 2]
            layers = [k for k in run.probes[2] if k.startswith("l1|")]
            assert len(layers) == 3  # the conv layer and two linear ones
            assert all(v > 0 for k, v in run.probes[2].items() if k.startswith("l1|"))
        assert "l1-depth.png" in [name for name, _, _ in mechanism_figures(results.study)]
        assert (results.study.out_dir / "figures" / "l1-depth.png").exists()  # on the report page
        assert "Mean absolute weight" in Path(results.report).read_text()


def test_a_report_section_is_one_registration(tmp_path):
    def build(results, save):
        return {"runs": len(results.runs)}

    with registered(REPORT_SECTIONS, "run-count", build, title="Run count", anchor="run-count",
                    html="<p id='runs'>{{ s.runs }} runs</p>", md="{{ s.runs }} runs"):
        results = _run(_study(), tmp_path)
        html = results.report.read_text()
        assert '<a href="#run-count">Run count</a>' in html and "<p id='runs'>2 runs</p>" in html
        assert "2 runs" in results.report.with_suffix(".md").read_text()


class ReversedExecutor(Executor):
    """In this process, the last job first."""

    name = "reversed"
    step_bars = True
    ran: list[str] = []

    def run(self, jobs, handle) -> None:
        for job in reversed(jobs):
            ReversedExecutor.ran.append(job.label)
            execute_job(job, lambda event, job=job: handle(job, event))
            handle(job, JobEnded())


def test_an_executor_is_one_registration(tmp_path):
    study = _study(wide={"model": {"hidden": [24]}})  # two stacks: two jobs
    local = _run(study, tmp_path / "local").runs()
    with registered(EXECUTORS, "reversed", lambda options, device: ReversedExecutor()):
        log = io.StringIO()
        runs = _run(study, tmp_path / "reversed", executor="reversed", log=log).runs()
    planned = log.getvalue().split("with the reversed executor, most expensive first: ")[1].splitlines()[0]
    assert ReversedExecutor.ran == planned.split("; ")[::-1] and len(ReversedExecutor.ran) == 2
    for column in ("test_acc", "test_loss", "train_loss"):
        assert runs[column].tolist() == local[column].tolist()


def test_an_unknown_executor_or_option_is_one_line_with_close_matches(tmp_path):
    with pytest.raises(nnstudy.UserError, match="'locl' is not a known executor; did you mean 'local'"):
        _run(_study(), tmp_path, executor="locl")
    with pytest.raises(nnstudy.UserError, match="unknown option 'worker'; did you mean workers"):
        _run(_study(), tmp_path, worker=2)
    assert not (tmp_path / "out").exists()
