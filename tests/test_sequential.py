"""Seeds until decided: the design's error control by simulation, its cost, and a real study killed between looks."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnstudy
from nnstudy.errors import UserError
from nnstudy.stats.sequential import (BETTER, CONTINUE, EQUIVALENT, UNDECIDED, WORSE, boundaries, decide,
                                      fixed_design_seeds, naive_false_verdicts, simulate)

LOOKS = (3, 5, 8, 12, 20)
PATHS = 40_000


def _limit(p: float = 0.05, reps: int = PATHS) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / reps)  # plus three Monte Carlo standard errors


NOISES = {
    "normal": None,
    # The difference of two lognormal arms: symmetric (the arms are exchangeable) but heavy-tailed.
    "heavy-tailed": lambda g, shape: g.lognormal(0, 0.5, shape) - g.lognormal(0, 0.5, shape),
    # Counts (e.g. errors out of 20): ties, and equal differences at small n.
    "counts": lambda g, shape: (g.binomial(20, 0.1, shape) - g.binomial(20, 0.1, shape)).astype(float),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(NOISES))
def test_with_no_true_difference_false_verdicts_over_all_looks_stay_at_5_percent(kind):
    # counts are known to one count: the evidence rule's floor (continuous noise needs none)
    result = simulate(LOOKS, 0.0, 1.0, 0.5, paths=PATHS, seed=1, noise=NOISES[kind], floor=float(kind == "counts"))
    assert result[BETTER] + result[WORSE] <= _limit(), result
    # Looking at the same seeds naively (a t-test at 5% on each look, stop at p < 0.05) exceeds it.
    assert naive_false_verdicts(LOOKS, paths=PATHS, seed=1, noise=NOISES[kind]) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("spending", ["pocock", "obrien-fleming"])
def test_a_difference_at_the_edge_of_the_smallest_worth_knowing_is_rarely_called_equivalent(spending):
    result = simulate(LOOKS, 0.5, 1.0, 0.5, spending=spending, paths=PATHS, seed=2)
    assert result[EQUIVALENT] <= _limit(), result
    assert result[BETTER] + result[WORSE] + result[EQUIVALENT] + result[UNDECIDED] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_true_difference_of_twice_the_smallest_is_found_with_fewer_seeds_than_a_fixed_design():
    d, sd = 0.5, 1.0
    result = simulate(LOOKS, 2 * d, sd, d, paths=PATHS, seed=3)
    fixed = fixed_design_seeds(result[BETTER], 2 * d, sd)
    assert result[BETTER] > 0.9 and fixed is not None
    assert result["mean_seeds"] < fixed  # expected seeds against the fixed design of equal power


def test_boundaries_are_the_same_every_time_and_spend_exactly_alpha():
    first = boundaries(LOOKS, 0.05, "pocock")
    boundaries.cache_clear()
    again = boundaries(LOOKS, 0.05, "pocock")
    assert first == again
    assert first[-1].spent == pytest.approx(0.05)
    assert all(b.nominal_p < 0.05 for b in first)
    obf = boundaries(LOOKS, 0.05, "obrien-fleming")
    assert obf[0].critical_t > first[0].critical_t and obf[-1].critical_t < first[-1].critical_t
    with pytest.raises(ValueError, match="increasing"):
        boundaries((5, 3), 0.05, "pocock")


def test_decisions_on_hand_made_looks():
    design = boundaries(LOOKS, 0.05, "pocock")
    same = decide(np.full(3, 0.1), design[0], 0.5, last=False, floor=0.1)
    assert same.decision == CONTINUE  # 3 equal differences of one step: the step is the spread, too few seeds
    assert same.ci_high - same.ci_low == pytest.approx(2 * design[0].critical_t * 0.1 / math.sqrt(3))
    assert decide(np.full(3, 1.0), design[0], 0.5, last=False, floor=0.1).decision == BETTER  # ten steps each
    clear = decide(np.array([1.0, 1.1, 0.9, 1.05, 0.95]), design[1], 0.5, last=False, floor=0.0)
    assert clear.decision == BETTER and clear.ci_low > 0
    assert decide(-np.array([1.0, 1.1, 0.9, 1.05, 0.95]), design[1], 0.5, last=False, floor=0.0).decision == WORSE
    tiny = decide(np.array([0.01, -0.02, 0.015, 0.0, -0.01, 0.02, -0.015, 0.005]), design[2], 0.5, last=False, floor=0.0)
    assert tiny.decision == EQUIVALENT and -0.5 < tiny.ci_low < tiny.ci_high < 0.5
    wide = decide(np.array([1.0, -1.2, 0.8, -0.5, 0.1] * 4), design[4], 0.5, last=True, floor=0.0)
    assert wide.decision == UNDECIDED
    half = design[1].critical_t * np.std([1.0, 1.1, 0.9, 1.05, 0.95], ddof=1) / math.sqrt(5)
    assert clear.ci_high - clear.ci_low == pytest.approx(2 * half)


def test_looks_need_a_smallest_difference_and_increasing_counts():
    base = {"name": "s", "seeds": [0, 1], "dataset": {"name": "digits"}, "variants": {"a": {}, "b": {}}}
    with pytest.raises(UserError, match="needs --smallest-difference as well"):
        nnstudy.load_study(base, looks=[3, 5])
    with pytest.raises(UserError, match="looks must be increasing"):
        nnstudy.load_study({**base, "sequential": {"looks": [5, 3], "smallest_difference": 0.01}})
    study = nnstudy.load_study(base, looks=[3, 5], smallest_difference=0.01)
    assert study.seeds == [0, 1, 2, 3, 4]  # the seeds go on from the listed ones to the last look


STUDY = """
name = "until-decided"
seeds = [0, 1, 2]

[dataset]
name = "digits"
subset = 400
test_subset = 200

[model]
kind = "mlp"
hidden = [16]

[train]
epochs = 2
batch_size = 64
lr = 0.05

[variants.a]

[variants.narrow]
model.hidden = [4]

[variants.twin]
train.lr = 0.0501

[sequential]
looks = [3, 5, 8]
# Small enough that twin's equal accuracies at 3 seeds (interval +-2.6 pp: one test image of ~360 taken as
# the spread) do not already read "equivalent": the study must go on to a second look to be killed there.
smallest_difference = 0.02
"""


def _nnstudy(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "NNSTUDY_CACHE": str(cwd / "cache")}
    return subprocess.Popen([sys.executable, "-m", "nnstudy.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _looks(out: Path, cwd: Path) -> list[dict]:
    shown = subprocess.run([sys.executable, "-m", "nnstudy.cli", "show", "until-decided", "--out", str(out), "--json"],
                           cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)["looks"]


@pytest.mark.slow
def test_a_study_killed_between_looks_resumes_to_the_same_looks_and_decisions(tmp_path):
    (tmp_path / "study.toml").write_text(STUDY)
    common = ["--executor", "local", "--quiet", "--cache-dir", str(tmp_path / "cache")]
    straight = _nnstudy("run", "study.toml", "--out", "straight", *common, cwd=tmp_path)
    assert straight.wait(timeout=600) == 0, straight.stdout.read()

    killed = _nnstudy("run", "study.toml", "--out", "killed", *common, cwd=tmp_path)
    for line in killed.stdout:  # the first look is trained and decided; kill as the second begins
        if "look 2 of 3" in line:
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=600)
    assert killed.returncode == -signal.SIGKILL
    partial = _looks(tmp_path / "killed", tmp_path)
    assert {row["look"] for row in partial} == {1}

    resumed = _nnstudy("run", "study.toml", "--out", "killed", *common, cwd=tmp_path)
    text = resumed.stdout.read()
    assert resumed.wait(timeout=600) == 0, text
    assert "already finished" in text
    assert "narrow vs a, test accuracy, until decided (look" in text  # the findings table carries the decisions
    expected = _looks(tmp_path / "straight", tmp_path)
    assert _looks(tmp_path / "killed", tmp_path) == expected
    assert {row["decision"] for row in expected} <= {BETTER, WORSE, EQUIVALENT, UNDECIDED, CONTINUE}
    narrow = [row for row in expected if row["variant"] == "narrow"]
    assert narrow[-1]["decision"] != CONTINUE  # every comparison ends decided (or undecided at the last look)
    html = (tmp_path / "straight" / "until-decided" / "report.html").read_text()
    assert 'id="looks"' in html and "repeated 95% interval" in html
