"""What the tests share: small study files (digits, a tiny MLP, two variants, two seeds: seconds to run) and
the ways to run `nnstudy` on them (in this process; as a process that is killed)."""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple


class CliResult(NamedTuple):
    rc: int
    out: str
    err: str


def run_cli(*argv) -> CliResult:
    """`nnstudy ARGV` in this process: its exit status and what it printed.

    No process start-up and no second import of torch (seconds each), so a test runs the CLI in its own
    process unless what it tests is the process itself (a kill, the real exit status, a fresh interpreter).
    Usable outside a test function too (module-scoped fixtures), which capsys is not.
    """
    from nnstudy.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return CliResult(rc, out.getvalue(), err.getvalue())


def run_process(*argv, timeout: float = 300, **env: str):
    """`nnstudy ARGV` as its own process, with `env` added to the environment (the crash hooks): the
    CompletedProcess, output as text. For what needs the process: a kill, the real stderr and exit status."""
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "nnstudy", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def tiny_study(epochs: int = 3, report_epochs: list[int] | None = None, variant_b: str = "model.hidden = [24]") -> str:
    lines = ['name = "tiny"', "seeds = [0, 1]"]
    if report_epochs:
        lines.append(f"report_epochs = {report_epochs}")
    lines += [
        "", "[dataset]", 'name = "digits"', "subset = 300", "test_subset = 100",
        "", "[model]", 'kind = "mlp"', "hidden = [16]",
        "", "[train]", "lr = 0.05", "batch_size = 32", f"epochs = {epochs}",
        "", "[variants.a]", "", "[variants.b]", variant_b, "",
    ]
    return "\n".join(lines)


def digits_cnn(name: str, variants: str, seeds=(0, 1), epochs: int = 2) -> str:
    """A one-conv CNN on 240 digits (90 to test): `variants` is the study file's [variants.*] tables."""
    return f'name = "{name}"\nseeds = {list(seeds)}\n' + f"""report_epochs = [1]
[dataset]
name = "digits"
subset = 240
test_subset = 90
[model]
kind = "cnn"
channels = [4]
kernel = 3
padding = 1
hidden = [16]
[train]
lr = 0.05
batch_size = 32
epochs = {epochs}
""" + variants


def run_args(study, out, cache, *extra, executor: str = "local") -> list[str]:
    """`nnstudy run` on a test study: its own store and cache, no bars, trained in the CLI's process by default."""
    return ["run", str(study), "--out", str(out), "--cache-dir", str(cache), "--quiet", "--executor", executor,
            *map(str, extra)]


def killed_then_resumed(study_file, tmp_path, checkpoint: int):
    """`nnstudy run` on two worker processes, killed (the whole process) after its `checkpoint`-th checkpoint,
    then run again to the end: (the killed run's, the resumed run's) CompletedProcess."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "nnstudy", "run", str(study_file), "--out", str(tmp_path / "out"),
           "--cache-dir", str(tmp_path / "cache"), "--quiet", "--executor", "process", "--workers", "2"]
    env = {**os.environ, "NNSTUDY_CRASH_AT": f"checkpoint.pt:{checkpoint}", "NNSTUDY_CRASH_PARENT": "1",
           "NNSTUDY_CRASH_ONCE": str(tmp_path / "crashed")}
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode != 0 and (tmp_path / "crashed").exists(), killed.stderr
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    return killed, resumed
