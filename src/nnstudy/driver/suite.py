"""Run a suite: several studies' jobs under one queue, each study's numbers those of the study run alone.

Each study is prepared as `run_study` prepares it (`prepare_study`: stored,
its runs brought in line, its own plan for the same workers), so its runs keep
their identities and train in the same stacks as when the study runs alone.
What the suite adds is the order: every study's jobs in one queue, most
expensive first, onto whichever worker frees up first (`execute_parts`), with
one progress line and one time left for the whole. Rerunning the suite trains
only what is missing, like a study. A study run until decided ([sequential])
runs after the queue, look by look, through its own code path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from nnstudy.config import StudyConfig
from nnstudy.config.suite import SuiteConfig
from nnstudy.driver.options import RunOptions, resolve_device
from nnstudy.driver.plan import preflight
from nnstudy.driver.study_run import execute_parts, import_in_background, output_lock, prepare_study
from nnstudy.errors import UserError
from nnstudy.executors import open_executor
from nnstudy.store import Store, load_results


@dataclass
class SuiteRun:
    """What a suite run leaves: each study's results and report paths, and the replication report's paths."""

    name: str
    results: dict = field(default_factory=dict)  # study name -> StudyResults
    reports: dict = field(default_factory=dict)  # study name -> {"html": ..., "md": ...}
    replication: dict = field(default_factory=dict)  # {"html": ..., "md": ...} when the suite writes one


def run_suite(suite: SuiteConfig, studies: list[tuple[StudyConfig, str]], options: RunOptions) -> SuiteRun:
    """Train what is missing of every study (each (config, source) pair), then write each study's report, then
    the replication report when the suite asks for one."""
    names = [s.name for s, _ in studies]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice:
        raise UserError(f"{suite.source}: two of its studies are named {twice!r}; give each study its own name")
    out, device, log = Path(options.out), resolve_device(options.device), options.log or sys.stderr
    executor = open_executor(options, device)  # before anything is written
    queued = [(s, src) for s, src in studies if s.sequential is None]
    stacking = {s.name: preflight(s, options.cache, options, log) for s, _ in queued}  # every study before any trains
    done = SuiteRun(suite.name)
    with output_lock(out):
        store = Store(out)
        parts = [prepare_study(s, src, options, store, device, executor.slots(), stacking[s.name], log)
                 for s, src in queued]
        busy = [p for p in parts if p.todo]
        if busy:
            import_in_background("nnstudy.report.build")
            execute_parts(busy, suite.name, store, device, executor, options, log, suite=True)
        from nnstudy.report import build_report

        if suite.replication and len(queued) == len(studies):  # first, so that the studies' reports link to it
            done.replication = _replication(out)
        for s, _ in queued:
            done.results[s.name] = load_results(store, s.name)
            done.reports[s.name] = build_report(done.results[s.name])
        store.close()
    for s, src in studies:
        if s.sequential is not None:
            from nnstudy.driver.until_decided import run_until_decided

            print(f"{suite.name}: {s.name} runs until decided, look by look, after the others", file=log, flush=True)
            done.results[s.name], done.reports[s.name] = run_until_decided(s, src, options)
    if suite.replication and not done.replication:
        done.replication = _replication(out)
    return done


def _replication(out: Path) -> dict:
    from nnstudy.report.replication import write_replication

    return write_replication(out)
