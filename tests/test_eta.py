"""The per-epoch line's "study time left": the estimator on hand-made timings, then a real study's printed lines."""

from __future__ import annotations

import re

from studies import run_cli, tiny_study

from nnstudy.driver.clock import StudyClock, time_left
from nnstudy.driver.end_costs import GRID_FIGURES, REPORT_WORK, RUN_FIGURES, end_costs, report_figures


class Clock(StudyClock):
    """A StudyClock on a hand-set time."""

    def __init__(self, slots: int, **end):
        self.t = 0.0
        super().__init__(slots, now=lambda: self.t, **end)

    def at(self, t: float) -> "Clock":
        self.t = t
        return self


def test_queued_jobs_start_on_the_first_free_worker():
    assert time_left([], [], 2) == 0
    assert time_left([3.0], [], 4) == 3
    assert time_left([], [5.0, 5.0, 5.0], 1) == 15
    assert time_left([3.0, 1.0], [2.0, 2.0], 2) == 5  # 1+2, then 3+2
    assert time_left([1.0, 1.0, 1.0], [4.0], 2) == 5  # more running than workers (Ray): the next one waits


def test_one_worker_a_measured_job_then_one_planned_twice_as_costly():
    """A: 10 epochs of 2 s after 3 s of set-up; B, queued: 10 epochs of 4 s (its plan says twice A's cost)."""
    c = Clock(slots=1)
    c.plan("A", 10, cost=10.0)
    c.plan("B", 10, cost=20.0)
    c.at(0).started("A")
    c.at(5).epoch("A", 9, seconds=1.6)  # set-up 3 s + 2 s; the trainer timed 1.6 s of it
    assert 0.5 * 58 <= c.seconds_left() <= 1.5 * 58  # true: 9 x 2 + 10 x 4
    c.at(7).epoch("A", 8, seconds=1.6)
    assert c.seconds_left() == 8 * 2 + 10 * 4
    c.at(8)
    assert c.seconds_left() == 8 * 2 - 1 + 10 * 4  # half of A's epoch done
    c.at(20)
    assert c.seconds_left() == 7 * 2 + 10 * 4  # an epoch that overruns counts as one done, no more
    for e in range(3, 11):
        c.at(18 + 2 * e).epoch("A", 10 - e, seconds=1.6)
    c.ended("A")
    c.at(38).started("B")
    assert c.seconds_left() == 10 * 4  # B not timed yet: A's pace, scaled by the plan
    c.at(45).epoch("B", 9, seconds=3.5)  # its own 3 s of set-up, then 4 s
    c.at(49).epoch("B", 8, seconds=3.5)
    assert c.seconds_left() == 8 * 4


def test_two_workers_a_job_whose_first_epoch_is_late_is_not_taken_as_quick():
    """A and B start together; B's plan says A's cost, but its epochs take 8 s, not 2 (A's set-up: 3 s)."""
    c = Clock(slots=2)
    c.plan("A", 10, cost=10.0)
    c.plan("B", 10, cost=10.0)
    c.at(0).started("A")
    c.started("B")
    c.at(5).epoch("A", 9, seconds=1.6)
    c.at(7).epoch("A", 8, seconds=1.6)
    assert c.seconds_left() == 10 * 4 - 4  # B's first epoch has run 7 s, 3 of them set-up: 4 s an epoch at least
    c.at(9)
    assert c.seconds_left() == 10 * 6 - 6
    c.at(11).epoch("B", 9, seconds=7.5)  # 3 s set-up + 8 s
    c.at(19).epoch("B", 8, seconds=7.5)
    assert c.seconds_left() == 8 * 8


def test_the_time_left_counts_each_jobs_run_figures_on_its_worker_and_then_the_report():
    """Two workers; A (2 runs) and B (1 run) take 2 s an epoch; a run's figures take 1 s, the report 6 s."""
    c = Clock(slots=2, run_end=1.0, study_end=6.0)
    c.plan("A", 3, runs=2)
    c.plan("B", 5, runs=1)
    c.at(0).started("A")
    c.started("B")
    c.at(3).epoch("A", 2)  # 1 s of set-up each
    c.epoch("B", 4)
    c.at(5).epoch("A", 1)
    c.epoch("B", 3)
    assert c.seconds_left() == max(1 * 2 + 2, 3 * 2 + 1) + 6  # B's worker is the later one: 7 s, then the report
    c.at(7).epoch("A", 0)
    c.epoch("B", 2)
    assert c.seconds_left() == max(2, 2 * 2 + 1) + 6
    c.at(8)  # A draws its runs' figures: half done
    assert c.seconds_left() == max(1, 2 * 2 + 1 - 1) + 6
    c.at(9.5)  # A's figures overrun: they count as done, no more
    assert c.seconds_left() == max(0, 2 * 2 + 1 - 2) + 6
    c.ended("A")
    c.at(11).epoch("B", 0)
    assert c.seconds_left() == 1 + 6  # the last epoch is in: B's figures and the report remain, not nothing
    without = Clock(slots=2)  # what the clock said before it counted the end
    without.plan("B", 1)
    without.at(0).started("B")
    without.at(2).epoch("B", 0)
    assert without.seconds_left() == 0


def test_the_end_is_counted_in_figures_each_the_time_the_sample_grid_took_over_its_share():
    end = end_costs(grid_seconds=0.9, variants=2)
    figure = 0.9 / GRID_FIGURES
    assert end.run == RUN_FIGURES * figure
    assert end.study == REPORT_WORK * report_figures(2) * figure
    assert end_costs(1.8, 2).study == 2 * end.study  # a machine twice as slow (or as busy) takes twice as long
    assert report_figures(3) == report_figures(2) + 1  # one more variant: one more confusion matrix
    assert report_figures(1) == report_figures(2) - 2  # one variant: no difference figure either
    assert end_costs(-1.0, 2) == end_costs(0.0, 2)  # a clock that stepped back gives no end, not a negative one


def test_a_reports_figures_are_as_many_as_the_end_counts(tmp_path, cli):
    """The count the time left uses against the figures a real report writes (its sample grid aside)."""
    from studies import run_args

    study = tmp_path / "tiny.toml"
    study.write_text(tiny_study(epochs=1))
    assert cli(*run_args(study, tmp_path / "out", tmp_path / "cache")).rc == 0
    drawn = sorted(p.name for p in (tmp_path / "out" / "tiny" / "figures").glob("*.png") if p.name != "samples.png")
    assert len(drawn) == report_figures(2), drawn


def test_a_study_prints_an_estimate_that_is_not_zero_and_falls_to_its_end(tmp_path):
    """The printed line end to end (the numbers are checked above: on a shared machine an epoch's time swings
    several-fold from one epoch to the next, so no estimate can be held to the time that then follows)."""
    study = tmp_path / "eta.toml"
    study.write_text(tiny_study(epochs=40, variant_b="train.lr = 0.04"))
    rc, _, err = run_cli("run", study, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                         "--executor", "local", "--no-stack-variants")  # no terminal (captured): epoch lines
    assert rc == 0, err
    left = [60 * int(m[1]) + int(m[2]) for m in re.finditer(r"epoch \d+/40:.*time left ~(\d+)m(\d+)s", err)]
    assert len(left) == 2 * 40, err  # two jobs, one after the other
    assert left[1] >= 1, err  # 78 epochs to go, each with a checkpoint and probes: seconds, not zero
    assert 1 <= left[-1] < left[1], err  # the last epoch is in: the figures and report remain
