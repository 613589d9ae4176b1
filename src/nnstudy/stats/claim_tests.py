"""The tests behind a claim's verdict, vectorised over rows of per-seed differences [..., n].

A claim is decided like a comparison, by the one evidence rule of
`evidence.py` (the t-test with the spread at least the metric's resolution
`floor`), two-sided at 5% (the 95% interval), in the claimed direction. A
one-sided test at 5% would be the textbook choice for a stated direction, but
the t-test is not calibrated one-sided on skewed differences: with mean-zero
lognormal differences (sigma 0.25) it says "less" about 8% of the time at
n = 5. Two-sided, each direction keeps to 2.5% plus the skew, under 5% at
n = 3, 5 and 10 (`tests/test_claims_calibration.py` simulates it, ties and
quantised differences included).
"""

from __future__ import annotations

import numpy as np

from . import evidence


def one_sided_p(diffs, shift: float, alternative: str, floor) -> np.ndarray:
    """p-value of "the mean difference is not `alternative` ("greater"/"less") than `shift`", per row."""
    return evidence.p_value(diffs, floor, shift, alternative)


def directional_p(diffs, floor) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided p, sign) per row: the p that decides a greater/less claim, and which way the data lean."""
    greater, less = one_sided_p(diffs, 0.0, "greater", floor), one_sided_p(diffs, 0.0, "less", floor)
    return np.minimum(1.0, 2 * np.minimum(greater, less)), np.where(greater <= less, 1, -1)


def within_p(diffs, tolerance: float, floor) -> tuple[np.ndarray, np.ndarray]:
    """(p inside, p outside) per row for a claim "the difference lies within +-tolerance".

    p inside < 0.05 exactly when the 95% interval lies inside the tolerance
    (two one-sided tests at 2.5%); p outside < 0.05 when it lies wholly beyond one edge.
    """
    inside = 2 * np.maximum(one_sided_p(diffs, -tolerance, "greater", floor),
                            one_sided_p(diffs, tolerance, "less", floor))
    outside = 2 * np.minimum(one_sided_p(diffs, tolerance, "greater", floor),
                             one_sided_p(diffs, -tolerance, "less", floor))
    return np.minimum(1.0, inside), np.minimum(1.0, outside)
