"""The Python API: load a study, run it, read its results as pandas DataFrames.

    import nnstudy
    study = nnstudy.load_study("quickstart", seeds=[0, 1, 2])
    results = study.run(out="nnstudy-out")      # same store, resume and report as `nnstudy run`
    results.comparisons()                       # one row per comparison, with its verdict

The command line is a thin layer over these calls.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from nnstudy.config import StudyConfig, parse_study
from nnstudy.config import load_study as _load_config
from nnstudy.driver.options import RunOptions
from nnstudy.errors import UserError


class Study:
    """A validated study: a baseline, variants and seeds. Build one with `load_study`."""

    def __init__(self, config: StudyConfig, source: str):
        self.config, self.source = config, source

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def variants(self) -> list[str]:
        return list(self.config.variants)

    @property
    def baseline(self) -> str:
        return self.config.baseline_name

    @property
    def seeds(self) -> list[int]:
        return list(self.config.seeds)

    def run(self, out: str | os.PathLike = "nnstudy-out", *, options: RunOptions | None = None,
            **keywords) -> "Results":
        """Train every (variant, seed) run that is missing, then write the report.

        The options are `nnstudy run`'s, as keywords (`device="cpu", executor="process", workers=2, force=True,
        cache_dir=..., progress=False, log=...`: every field of `nnstudy.driver.options.RunOptions`) or as one RunOptions.
        """
        options = options or RunOptions.from_keywords(out, **keywords)
        if self.config.sequential is not None:
            from nnstudy.driver.until_decided import run_until_decided

            results, paths = run_until_decided(self.config, self.source, options)
        else:
            from nnstudy.driver.study_run import run_study

            results, paths = run_study(self.config, self.source, options)
        return Results(results, paths)

    def results(self, out: str | os.PathLike = "nnstudy-out") -> "Results":
        """What the store in `out` holds for this study, without training."""
        return open_results(self.name, out)

    def summary(self):
        """One row per variant: what it changes against the baseline, and its training length."""
        import pandas as pd

        rows = []
        for name, cfg in self.config.variants.items():
            rows.append({"variant": name, "baseline": name == self.baseline, "changes": self._changes(name),
                         "model": cfg.model.name or cfg.model.factory or cfg.model.kind,
                         "epochs": cfg.train.epochs, "seeds": len(self.seeds)})
        return pd.DataFrame(rows).set_index("variant")

    def _changes(self, variant: str) -> str:
        """What a variant sets differently from the baseline: "model.kind = mlp, ..." or "-"."""
        base = self.config.variants[self.baseline].model_dump(mode="json", by_alias=True)
        mine = self.config.variants[variant].model_dump(mode="json", by_alias=True)
        changes = {f"{section}.{k}": v for section in ("dataset", "model", "train")
                   for k, v in mine[section].items() if v != base[section][k]}
        return ", ".join(f"{k} = {v}" for k, v in changes.items()) or "-"

    def _repr_html_(self) -> str:
        head = f"<p><b>{_escape(self.name)}</b>: {len(self.variants)} variants x {len(self.seeds)} seeds, " \
               f"baseline {_escape(self.baseline)}</p>"
        return head + self.summary().to_html()

    def __repr__(self) -> str:
        """A summary: size, seeds, and what each variant changes against the baseline."""
        epochs = sorted({cfg.train.epochs for cfg in self.config.variants.values()})
        lines = [f"Study {self.name!r} ({self.source}): {len(self.variants)} variants x {len(self.seeds)} seeds = "
                 f"{len(self.variants) * len(self.seeds)} runs, {'/'.join(map(str, epochs))} epochs, "
                 f"seeds {', '.join(map(str, self.seeds))}"]
        for name in self.variants:
            lines.append(f"  {name}: " + ("baseline" if name == self.baseline else self._changes(name)))
        return "\n".join(lines)


def load_study(study, *, seeds: list[int] | None = None, data_dir: str | os.PathLike | None = None,
               precision: str | None = None, looks: list[int] | None = None,
               smallest_difference: float | None = None, settings: list[str] | None = None) -> Study:
    """A study from a built-in name, a .toml file, or a dict with the study file's keys.

    The keyword arguments override the file as the command line does
    (`--seeds`, `--data-dir`, `--precision`, `--looks`, `--smallest-difference`); `settings` are
    KEY=VALUE texts, as after `nnstudy run STUDY` (["train.lr=0.01", "model.activation=relu,tanh"]).
    Mistakes raise `UserError` with one line naming the key.
    """
    overrides = {k: v for k, v in {"seeds": seeds, "data_dir": str(data_dir) if data_dir else None,
                                   "precision": precision, "looks": looks,
                                   "smallest_difference": smallest_difference, "settings": settings}.items()
                 if v is not None}
    if isinstance(study, StudyConfig):
        return Study(study, "study object")
    if isinstance(study, dict):
        return Study(parse_study(study, "study dict", Path.cwd(), overrides), "study dict")
    if isinstance(study, (str, os.PathLike)):
        return Study(_load_config(str(study), overrides), str(study))
    raise UserError(f"load_study takes a built-in name, a .toml path or a dict, not {type(study).__name__}")


def open_results(name: str, out: str | os.PathLike = "nnstudy-out") -> "Results":
    """A stored study's results, read from the store in `out` (no training)."""
    from nnstudy.store import Store, load_results

    store = Store(out, create=False)
    try:
        return Results(load_results(store, name), {})
    finally:
        store.close()


class Results:
    """A study's stored results; each table is a fresh pandas DataFrame."""

    def __init__(self, study_results, report_paths: dict):
        self.study = study_results
        self.report_paths = report_paths

    @property
    def report(self) -> Path | None:
        """The HTML report (None when only read from the store)."""
        return self.report_paths.get("html")

    @property
    def findings(self):
        """Every verdict at the final epoch, then every claim's: a list of row dicts that prints as the
        short table `nnstudy run` ends with (`pd.DataFrame(results.findings)` for a table)."""
        from nnstudy.report.findings import findings

        return findings(self.study)

    def __repr__(self) -> str:
        """A summary: the study, its runs by status, its findings and where the report is."""
        from nnstudy.report.context import status_counts

        status = ", ".join(f"{n} {s}" for s, n in status_counts(self.study)) or "none"
        lines = [f"Results of study {self.study.name!r}: {len(self.study.runs)} runs ({status})", str(self.findings)]
        if self.report:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)

    def runs(self):
        """One row per (variant, seed): status, final metrics, how it ran."""
        import pandas as pd

        rows = []
        for r in self.study.runs:
            final = r.final
            rows.append({"variant": r.variant, "seed": r.seed, "status": r.status, "epochs": len(r.history),
                         **{m: getattr(final, m) if final else float("nan")
                            for m in ("test_acc", "test_loss", "train_acc", "train_loss")},
                         "diverged_at": r.diverged_at, "n_params": r.n_params, "wall_seconds": r.wall_seconds,
                         **{k: r.settings.get(k) for k in ("device", "precision", "compile", "vectorized", "threads")},
                         "error": r.error})
        return pd.DataFrame(rows)

    def epochs(self):
        """One row per (variant, seed, epoch): the learning curves."""
        import pandas as pd

        rows = [{"variant": r.variant, "seed": r.seed, **dataclasses.asdict(e)} for r in self.study.runs
                for e in r.history]
        return pd.DataFrame(rows)

    def comparisons(self):
        """Every variant against the baseline at every reported epoch: differences, Holm p, verdict, sentence."""
        import pandas as pd

        from nnstudy.stats import compare_study

        if len(self.study.variants) < 2:
            return pd.DataFrame()
        return pd.DataFrame([dataclasses.asdict(c) for c in compare_study(self.study)])

    @property
    def factorial(self):
        """A grid of two or more factors: one row per main effect and pairwise interaction at each report epoch
        (estimate, 95% CI, Holm p, detectable size, verdict, sentence); empty otherwise. See stats/factorial.py."""
        from nnstudy.stats.factorial import effects_table, factorial

        return effects_table(factorial(self.study))

    def looks(self):
        """A study run until decided: each comparison's looks (n, estimate, interval, boundary, decision)."""
        import pandas as pd

        from nnstudy.stats.sequential import looks_table

        return pd.DataFrame(looks_table(self.study))

    def _repr_html_(self) -> str:
        table = self.comparisons()
        if table.empty:
            return self.runs().to_html()
        return table[["variant", "metric", "epoch", "n", "diff_mean", "p_holm", "verdict"]].to_html()


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


class Suite:
    """Several studies run as one (`nnstudy run coursework`): one queue of jobs, each study's numbers those of the
    study run alone. Build one with `load_suite`."""

    def __init__(self, config, studies: list[Study]):
        self.config, self.studies = config, studies

    @property
    def name(self) -> str:
        return self.config.name

    def run(self, out: str | os.PathLike = "nnstudy-out", *, options: RunOptions | None = None, **keywords):
        """Train what is missing of every study, write each study's report (and the replication report when the
        suite asks for one). Options as `Study.run`'s. Returns a `driver.suite.SuiteRun`."""
        from nnstudy.driver.suite import run_suite

        options = options or RunOptions.from_keywords(out, **keywords)
        return run_suite(self.config, [(s.config, s.source) for s in self.studies], options)

    def __repr__(self) -> str:
        return f"Suite {self.name!r} ({self.config.source}): " + ", ".join(s.name for s in self.studies)


def load_suite(suite, *, include: list[str] = (), **overrides) -> Suite:
    """A suite from a built-in name (`nnstudy studies` lists them) or a suite file, with the optional studies
    `include` names; `overrides` are `load_study`'s (seeds, data_dir, precision, ...), applied to every study:
    one data folder serves them all (MNIST's files and an image archive side by side)."""
    from nnstudy.config.suite import load_suite as _load_suite

    config = _load_suite(str(suite))
    return Suite(config, [load_study(s, **overrides) for s in config.chosen(list(include))])


def replication(out: str | os.PathLike = "nnstudy-out", reference_numbers: str | os.PathLike | None = None) -> list:
    """The replication report's rows (one per coursework statement R2.1-R6.5) from the store in `out`: the
    coursework's words and numbers beside ours, and the verdicts of the claims that test each statement."""
    from nnstudy.report.replication import replication_rows

    return replication_rows(out, reference_numbers)
