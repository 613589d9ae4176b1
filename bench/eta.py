"""How right is the "study time left" on the epoch lines? Run a study and compare each estimate with the truth.

Runs `nnstudy run STUDY ...` as a user would (no terminal: one line per
epoch), stamps every line of its output with the time it arrived, and, once
the study has ended, compares each line's "study time left ~XmYYs" with the
time that was really left. Lines before any job's second epoch are
not judged (the first epochs hold the set-up; issue 17 asks for 50% from the
second epoch on).

    python bench/eta.py quickstart
    python bench/eta.py cifar10-pooling --data-dir ../shared/data/cifar10-jpeg.tar.gz
    python bench/eta.py --replay stamped.log      # a log written by --keep earlier

`ratio:` last: the share of estimates from the second epoch on that are within 50% of the time really left.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCH = re.compile(r" epoch (\d+)/\d+")
LEFT = re.compile(r"study time left ~(?:(\d+)h(\d+)m|(\d+)m(\d+)s)")


def seconds_said(line: str) -> float | None:
    m = LEFT.search(line)
    if not m:
        return None
    if m.group(1) is not None:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60
    return int(m.group(3)) * 60 + int(m.group(4))


def run_stamped(argv: list[str]) -> list[tuple[float, str]]:
    """The study's output lines, each with the seconds since it started; the last entry is its end."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "nnstudy", "run", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = [(time.monotonic() - start, line.rstrip("\n")) for line in proc.stdout]
    if proc.wait() != 0:
        sys.exit("the study failed:\n" + "\n".join(line for _, line in lines[-5:]))
    lines.append((time.monotonic() - start, "(ended)"))
    return lines


def judge(lines: list[tuple[float, str]]) -> tuple[list[tuple[float, float, float]], int]:
    """(when, said, really left) for every estimate, and the index of the first line of a job's second epoch:
    the estimates judged (before it, no job has shown its pace beyond its set-up)."""
    end, rows, first = lines[-1][0], [], None
    for t, line in lines:
        if (said := seconds_said(line)) is not None:
            epoch = EPOCH.search(line)
            if first is None and epoch and int(epoch.group(1)) >= 2:
                first = len(rows)
            rows.append((t, said, end - t))
    return rows, len(rows) if first is None else first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", nargs="?", default="quickstart")
    p.add_argument("--data-dir")
    p.add_argument("--keep", help="write the stamped log here")
    p.add_argument("--replay", help="judge a stamped log written by --keep instead of running")
    args, extra = p.parse_known_args()
    if args.replay:
        lines = [(float(t), line) for t, line in (row.split(" ", 1) for row in Path(args.replay).read_text().splitlines())]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            argv = [args.study, "--out", tmp, *(["--data-dir", args.data_dir] if args.data_dir else []), *extra]
            lines = run_stamped(argv)
    if args.keep:
        Path(args.keep).write_text("".join(f"{t:.2f} {line}\n" for t, line in lines))
    rows, first = judge(lines)
    if len(rows) <= first:
        sys.exit("no epoch line said the time left")
    print(f"{'at':>8} {'said':>8} {'really':>8} {'error':>7}")
    for t, said, real in rows:
        print(f"{t:7.0f}s {said:7.0f}s {real:7.0f}s {100 * (said - real) / max(real, 1e-9):+6.0f}%")
    within, judged = hits(rows, first)
    print(f"{args.study}: {lines[-1][0]:.0f} s; {within} of {judged} estimates from the second epoch on "
          f"within 50% of the time left")
    print(f"ratio: {within / judged:.2f}")


def hits(rows: list[tuple[float, float, float]], first: int) -> tuple[int, int]:
    """(estimates within 50% of the time really left, estimates judged), from `judge`'s rows and first index.

    "Within 50%": said within half of what was really left, either way; the last seconds are judged against at
    least one second, so rounding to whole seconds near the end is not an error."""
    later = rows[first:]
    return sum(abs(said - real) <= 0.5 * max(real, 1.0) for _, said, real in later), len(later)


if __name__ == "__main__":
    main()
