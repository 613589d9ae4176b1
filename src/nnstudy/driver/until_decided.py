"""Run a study until its comparisons are decided: train the seeds of each look, decide, stop or go on.

Each look is an ordinary run of the study on its first n seeds (`runner.run_study`):
finished seeds are never retrained and keep their numbers, new seeds stack with
each other like any others. The decisions are computed from the stored runs
(`stats.sequential.study_looks`), never kept apart from them, so a study killed
at any point, between looks or inside one, and run again reaches the same looks
and the same decisions.
"""

from __future__ import annotations

import sys

from nnstudy.config import StudyConfig
from nnstudy.driver.study_run import RunOptions, run_study
from nnstudy.stats.sequential import CONTINUE, look_line, study_looks


def run_until_decided(study: StudyConfig, source: str, options: RunOptions):
    """Train look by look; returns (StudyResults, report paths) of the last look trained."""
    log = options.log or sys.stderr
    looks = study.sequential.looks
    results = paths = None
    for k, n in enumerate(looks):
        print(f"{study.name}: look {k + 1} of {len(looks)}: {n} seeds", file=log, flush=True)
        results, paths = run_study(study.model_copy(update={"seeds": study.seeds[:n]}), source, options)
        state = study_looks(results)
        for c in state:
            print("  " + look_line(c), file=log, flush=True)
        if all(c.decision != CONTINUE for c in state):
            decided = "every comparison decided" if k < len(looks) - 1 else "last look"
            print(f"{study.name}: stopped at look {k + 1} ({n} seeds): {decided}", file=log, flush=True)
            break
    return results, paths
