"""The benchmark scripts that need no dataset run end to end on tiny settings."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_autograd_overhead_hand_written_backward_matches_autograd():
    # The script checks its hand-written gradients against autograd's before timing
    # and exits non-zero if they differ by more than 1e-4.
    proc = subprocess.run([sys.executable, str(BENCH / "autograd_overhead.py"), "--device", "cpu", "--limit", "3",
                           "--repeat", "1"], capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["4"], ["128"])]
    assert [r[0] for r in rows] == ["4", "128"]
    assert all(float(r[-1]) < 1e-6 for r in rows), rows  # largest |hand - autograd| gradient difference
    assert proc.stdout.splitlines()[-1].startswith("ratio: ")
