"""The `nnstudy` command line: run, init, studies, list, show, report, export.

User mistakes print one line (`nnstudy: error: ...`) and exit with status 2;
Ctrl-C stops cleanly and says how to resume.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from nnstudy import run_status
from nnstudy.cli_values import amount, fraction, looks, positive, seeds
from nnstudy.errors import UserError

if TYPE_CHECKING:  # built at run time only, so `nnstudy --help` stays light
    from nnstudy.driver.options import RunOptions

DEFAULT_OUT = "nnstudy-out"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user mistake
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nnstudy", description="Reproducible neural-network design studies with an honest statistical verdict.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train every (variant, seed) run of a study (or of a suite's studies) and write "
                         "its report")
    run.add_argument("study", help="a built-in study or suite name (see `nnstudy studies`), or a study or suite "
                     ".toml file; KEY=VALUE after it overrides a setting (train.lr=0.01, variants.B.model.norm=batch) "
                     "or makes a grid (model.activation=relu,tanh)")
    run.add_argument("--with", dest="include", action="append", default=[], metavar="STUDY",
                     help="a suite: also run this optional study of it (repeatable), e.g. --with "
                          "mnist-activations-1000")
    run.add_argument("--out", default=DEFAULT_OUT, help=f"folder holding every study's results (default ./{DEFAULT_OUT})")
    run.add_argument("--data-dir", help="dataset folder or archive (overrides dataset.data_dir)")
    run.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    run.add_argument("--seeds", type=seeds, help="comma-separated seeds, e.g. 0,1,2 (overrides the study's seeds)")
    run.add_argument("--looks", type=looks, help="run until decided: the seed counts at which to decide, e.g. "
                     "3,5,8,12,20 (with --smallest-difference; overrides the study's [sequential] table)")
    run.add_argument("--smallest-difference", type=fraction, help="run until decided: the smallest difference "
                     "worth knowing, in the metric's unit (test accuracy: 0.002 = 0.2 pp)")
    run.add_argument("--force", action="store_true", help="rerun every run, even those already done")
    run.add_argument("--retry-failed", action="store_true", help="rerun only the runs that failed")
    # Not argparse choices: the registry is read (and a wrong name told, with close matches) when the study runs.
    run.add_argument("--executor", default="auto", help="where runs train: local (this process), process (a process "
                     "pool), ray (a Ray cluster), or any registered executor (default: auto)")
    run.add_argument("--workers", type=positive, help="process-pool size (default: one per CPU core on cpu)")
    run.add_argument("--ray-address", help="join the Ray cluster at HOST:PORT ('auto': the one started on this "
                     "machine); implies --executor ray, which otherwise starts a local Ray")
    run.add_argument("--cpus-per-job", type=amount, help="Ray: CPUs each job asks for, and its torch threads "
                     "(default 1)")
    run.add_argument("--gpus-per-job", type=amount, help="Ray: GPUs each job asks for; fractions share a GPU "
                     "(default 1 with --device cuda, else 0)")
    run.add_argument("--checkpoint-dir", help="where checkpoints go: a folder or URI that every node reaches, "
                     "e.g. /shared/ckpt or s3://bucket/prefix (default: each run's folder)")
    run.add_argument("--no-vectorize", action="store_true", help="train seeds one at a time instead of stacked")
    run.add_argument("--stack-variants", choices=["auto", "always", "never"],
                     help="auto (default): variants that differ only in values share a stack where the plan's cost "
                          "model says it pays (init, loss, optimiser values; not activation or pooling on CPU); "
                          "always: wherever they can; never: each variant its own stack")
    run.add_argument("--no-stack-variants", action="store_true", help="the same as --stack-variants never")
    run.add_argument("--share-cores", action="store_true",
                     help="process pool: running jobs take the cores of finished ones between epochs (faster; CPU "
                          "numbers of CNNs may then differ in the last bits between runs)")
    run.add_argument("--precision", choices=["fp32", "bf16"], help="override train.precision (bf16: autocast; recorded in the run config)")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    run.add_argument("--cache-dir", help="where decoded datasets are cached (default $NNSTUDY_CACHE or ~/.cache/nnstudy)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--no-probes", action="store_true",
                     help="skip the mechanism probes (per-layer activations, gradients, symmetry, shift invariance)")

    init = sub.add_parser("init", help="copy a built-in study (or suite) to a file you can edit (KEY=VALUE ... after "
                          "FILE writes those settings in, e.g. train.epochs=2)")
    init.add_argument("name")
    init.add_argument("file")

    sub.add_parser("studies", help="list the built-in studies and suites")

    replication = sub.add_parser("replication", help="the coursework's statements R2.1-R6.5 against the stored "
                                 "studies' numbers: write replication.html and .md, print the answer")
    replication.add_argument("--out", default=DEFAULT_OUT)
    replication.add_argument("--json", action="store_true", help="machine-readable output: every row")
    replication.add_argument("--reference-numbers", metavar="FILE", help="the coursework's numbers (default "
                             "../shared/reference-numbers.toml when it exists, else the copy nnstudy ships)")

    for name, text in (("list", "studies in an output folder, with run counts per status"),
                       ("show", "per-run table of one study"),
                       ("report", "rebuild a study's report from the store, without training")):
        sp = sub.add_parser(name, help=text)
        if name != "list":
            sp.add_argument("study")
        sp.add_argument("--out", default=DEFAULT_OUT)
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    export = sub.add_parser("export", help="export a stored study to MLflow or TensorBoard (the store is only read)")
    export.add_argument("study")
    # One option with an optional folder: argparse cannot put an optional positional after STUDY and --to.
    export.add_argument("--to", nargs="+", required=True, metavar=("TARGET", "DIR"),
                        help="mlflow, or tensorboard DIR (its runs go to DIR/STUDY/VARIANT/seed-K)")
    export.add_argument("--tracking-uri", metavar="URI", help="MLflow: sqlite:///mlflow.db or http://HOST:PORT "
                        "(default $MLFLOW_TRACKING_URI)")
    export.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the study's name)")
    export.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"folder holding the store (default ./{DEFAULT_OUT})")
    return p


# At exit the interpreter's last garbage collection walks every object torch, matplotlib and scipy made (about
# half a second of CPU after the report is written); the process ends anyway, so it skips them.
atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    _hear_ctrl_c()
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        args.settings = _settings(parser, args.command, extra)
        return _COMMANDS[args.command](args)
    except UserError as exc:
        print(f"nnstudy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nnnstudy: interrupted. Finished epochs are checkpointed; run the same command again to resume.", file=sys.stderr)
        return 130


def _settings(parser, command: str, extra: list[str]) -> list[str]:
    """The KEY=VALUE overrides after `run STUDY` or `init NAME FILE` (config/overrides.py reads them)."""
    unknown = [x for x in extra if command not in ("run", "init") or x.startswith("-") or "=" not in x]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return extra


def _hear_ctrl_c() -> None:
    """Take Ctrl-C even when started with SIGINT ignored (a script's `&` job): Python then installs no handler."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _cmd_run(args) -> int:
    from nnstudy.api import load_study
    from nnstudy.config.suite import is_suite
    from nnstudy.executors.warm import start_warming

    # Before the study is read (which loads torch here): the pool's workers load their libraries meanwhile.
    start_warming(args.executor, args.workers, args.ray_address, args.device)
    if is_suite(args.study):
        return _run_suite(args)
    if args.include:
        raise UserError(f"--with is for suites; {args.study} is a study (see `nnstudy studies` for the suites)")
    study = load_study(args.study, seeds=args.seeds, data_dir=args.data_dir, precision=args.precision,
                       looks=args.looks, smallest_difference=args.smallest_difference, settings=args.settings)
    results = study.run(options=_run_options(args))
    failed = [r for r in results.study.runs if r.status == "failed"]
    print(results.findings)
    print(f"report: {results.report}")
    if results.report_paths.get("index"):
        print(f"index: {results.report_paths['index']}")
    if failed:
        print(f"nnstudy: {len(failed)} run(s) failed; see the report's diagnostics, fix the cause, then rerun with --retry-failed",
              file=sys.stderr)
        return 1
    return 0


def _run_suite(args) -> int:
    from nnstudy.api import load_suite

    suite = load_suite(args.study, include=args.include, seeds=args.seeds, data_dir=args.data_dir,
                       precision=args.precision, looks=args.looks, smallest_difference=args.smallest_difference)
    done = suite.run(options=_run_options(args))
    failed = sum(r.status == "failed" for results in done.results.values() for r in results.runs)
    for name, paths in done.reports.items():
        print(f"{name}: report {paths['html']}")
    if done.replication:
        print(f"replication report: {done.replication['html']}")
        print(done.replication["answer"])
    if failed:
        print(f"nnstudy: {failed} run(s) failed; see the studies' reports, fix the cause, then rerun with "
              "--retry-failed", file=sys.stderr)
        return 1
    return 0


def _run_options(args) -> "RunOptions":
    """The run options, once: everything below reads this value."""
    from nnstudy.driver.options import RunOptions

    stacking = "never" if args.no_stack_variants else (args.stack_variants or "auto")
    return RunOptions.from_keywords(
        args.out, device=args.device, executor=args.executor, workers=args.workers, vectorize=not args.no_vectorize,
        compile=args.compile, force=args.force, stack_variants=stacking, share_cores=args.share_cores,
        retry_failed=args.retry_failed, cache_dir=args.cache_dir, ray_address=args.ray_address, progress=not args.quiet,
        probes=not args.no_probes, cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
        checkpoint_dir=args.checkpoint_dir)


def _cmd_init(args) -> int:
    from nnstudy import files
    from nnstudy.config import builtin_study_text
    from nnstudy.config.suite import builtin_suite_text, builtin_suites

    text = builtin_suite_text(args.name) if args.name in builtin_suites() else builtin_study_text(args.name)
    target = Path(args.file)
    if target.exists():
        raise UserError(f"{target} already exists; choose another file name (nnstudy init never overwrites)")
    if args.settings:
        from nnstudy.config.load import with_overrides

        text = with_overrides(text, args.settings, f"built-in study {args.name}")
    files.write_text(target, text)
    print(f"wrote {target}; edit it, then: nnstudy run {target}")
    return 0


def _cmd_studies(args) -> int:
    from nnstudy.config import builtin_studies
    from nnstudy.config.suite import builtin_suites

    studies, suites = builtin_studies(), builtin_suites()
    width = max(map(len, [*studies, *suites]))
    for name, line in studies.items():
        print(f"{name:<{width}}  {line}")
    print("suites (nnstudy run NAME runs every study of one):")
    for name, line in suites.items():
        print(f"{name:<{width}}  {line}")
    return 0


def _cmd_replication(args) -> int:
    from nnstudy.report.replication import write_replication

    written = write_replication(args.out, args.reference_numbers, create=False)
    if args.json:
        print(json.dumps({"html": str(written["html"]), "md": str(written["md"]), "answer": written["answer"],
                          "counts": written["counts"],
                          "rows": written["rows"]}, indent=2, default=str))
    else:
        print(written["answer"])
        print(f"replication report: {written['html']}")
    return 0


def _cmd_list(args) -> int:
    from nnstudy.store import Store

    rows = Store(args.out, create=False).study_counts()
    if args.json:
        print(json.dumps({"studies": rows}, indent=2))
        return 0
    if not rows:
        print(f"no studies in {args.out}")
    for r in rows:
        counts = ", ".join(f"{r[s]} {s}" for s in run_status.ALL if r[s])
        print(f"{r['study']}: {r['runs']} runs ({counts or 'none'})")
    return 0


def _cmd_show(args) -> int:
    from nnstudy.stats.sequential import look_line, looks_table, study_looks
    from nnstudy.store import Store, load_results

    store = Store(args.out, create=False)
    store.study(args.study)  # a clear error for an unknown name
    runs = []
    for r in store.runs(args.study):
        last = store.epochs(r.id)[-1:] or [None]
        e = last[0]
        runs.append({"id": r.id, "hash": r.config_hash, "variant": r.variant, "seed": r.seed, "status": r.status,
                     "epochs": r.epochs_done, "test_acc": e and e.test_acc, "test_loss": e and e.test_loss,
                     "train_acc": e and e.train_acc, "train_loss": e and e.train_loss, "error": r.error,
                     "settings": r.settings, "run_dir": str(r.run_dir)})
    results = load_results(store, args.study) if store.study(args.study)["spec"].get("sequential") else None
    if args.json:
        looks = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}
                 for row in (looks_table(results) if results is not None else [])]  # JSON has no infinity
        print(json.dumps({"study": args.study, "runs": runs, "looks": looks, "factorial": _factorial_json(store, args.study)},
                         indent=2))
        return 0
    print(f"{'id':>4}  {'variant':<16} {'seed':>4}  {'status':<9} {'epochs':>6}  {'test acc':>8}  {'test loss':>9}  "
          f"{'device':<6} {'prec':<4}")
    for r in runs:
        acc = f"{r['test_acc']:.2%}" if r["test_acc"] is not None else "-"
        loss = f"{r['test_loss']:.4f}" if r["test_loss"] is not None else "-"
        device, precision = r["settings"].get("device", "-"), r["settings"].get("precision", "-")
        print(f"{r['id']:>4}  {r['variant']:<16} {r['seed']:>4}  {r['status']:<9} {r['epochs']:>6}  {acc:>8}  {loss:>9}  "
              f"{device:<6} {precision:<4}" + (f"  {r['error']}" if r["error"] else ""))
    if results is not None:
        print("looks (run until decided):")
        for c in study_looks(results):
            print("  " + look_line(c))
    return 0


def _factorial_json(store, name: str) -> list[dict]:
    """A grid's main effects and interactions (stats/factorial.py) as JSON rows; [] without a factorial grid."""
    from nnstudy.stats.factorial import factorial
    from nnstudy.store import load_results

    if not (store.study(name)["spec"].get("grid") or {}).get("factors"):
        return []
    def finite(v):  # JSON has no nan
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return [finite(vars(e)) for e in factorial(load_results(store, name))]


def _cmd_report(args) -> int:
    from nnstudy.config.suite import is_suite
    from nnstudy.report import build_report
    from nnstudy.report.findings import findings
    from nnstudy.store import Store, load_results

    store = Store(args.out, create=False)
    if is_suite(args.study) and args.study not in {r["study"] for r in store.study_counts()}:
        args.reference_numbers = None  # a suite's report: the replication report
        return _cmd_replication(args)
    results = load_results(store, args.study)
    paths = build_report(results)
    rows = findings(results)
    if args.json:
        print(json.dumps({**{k: str(v) for k, v in paths.items()}, "findings": rows}))
    else:
        print(rows)
        print(f"report: {paths['html']}")
        if paths.get("index"):
            print(f"index: {paths['index']}")
    return 0


def _cmd_export(args) -> int:
    from nnstudy.export import export_study

    target, *rest = args.to
    if len(rest) > 1:
        raise UserError(f"--to {' '.join(args.to)}: too many values; write --to mlflow or --to tensorboard DIR")
    print(export_study(args.out, args.study, target, dest=rest[0] if rest else None, tracking_uri=args.tracking_uri,
                       experiment=args.experiment))
    return 0


_COMMANDS = {"run": _cmd_run, "init": _cmd_init, "studies": _cmd_studies, "list": _cmd_list, "show": _cmd_show,
             "report": _cmd_report, "export": _cmd_export, "replication": _cmd_replication}


if __name__ == "__main__":
    sys.exit(main())
