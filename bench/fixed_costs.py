"""A study's fixed costs: the seconds before its first epoch line and after its last, and how right its time left is.

Runs a copy of the quickstart study with more epochs (40 by default) as a user
would (`nnstudy run`, output to a pipe: one line per epoch), stamps every line
as it arrives (bench/eta.py), and prints

    start-up: seconds from the command to its first epoch line (imports, pre-flight, plan, workers' start);
    end:      seconds from its last epoch line to its exit (the runs' last files, the report);
    time left: the share of "study time left" lines from the second epoch on within 50% of the time really left.

    python bench/fixed_costs.py                 # 40 epochs
    python bench/fixed_costs.py --epochs 10 --keep stamped.log

Wall seconds: run it on a quiet machine, or say that it was not.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eta import EPOCH, hits, judge, run_stamped  # noqa: E402


def quickstart_copy(epochs: int) -> str:
    """The built-in quickstart study file with `epochs` epochs (the same study otherwise)."""
    from importlib.resources import files

    text = (files("nnstudy.studies") / "quickstart.toml").read_text()
    return re.sub(r"(?m)^epochs = \d+$", f"epochs = {epochs}", text.replace('name = "quickstart"', 'name = "fixed-costs"'))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--keep", help="write the stamped log here (bench/eta.py --replay reads it)")
    args, extra = p.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp, "fixed-costs.toml")
        study.write_text(quickstart_copy(args.epochs))
        lines = run_stamped([str(study), "--out", str(Path(tmp, "out")), *extra])
    if args.keep:
        Path(args.keep).write_text("".join(f"{t:.2f} {line}\n" for t, line in lines))
    epochs = [t for t, line in lines if EPOCH.search(line)]
    if not epochs:
        sys.exit("no epoch line came")
    start, end = epochs[0], lines[-1][0] - epochs[-1]
    within, judged = hits(*judge(lines))
    print(f"start-up: {start:.1f} s to the first epoch line")
    print(f"end: {end:.1f} s after the last epoch line")
    print(f"whole: {lines[-1][0]:.1f} s; start-up + end {start + end:.1f} s")
    print(f"time left: {within} of {judged} lines from the second epoch on within 50% of the time really left")
    print(f"ratio: {within / max(judged, 1):.2f}")


if __name__ == "__main__":
    main()
