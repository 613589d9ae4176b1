"""The tests behind a claim's verdict, vectorised over rows of per-seed differences [..., n].

A claim is decided like a comparison: by the two-sided test at 5% (the 95%
interval), in the claimed direction. A one-sided test at 5% would be the
textbook choice for a stated direction, but the t-test is not calibrated
one-sided on skewed differences: with mean-zero lognormal differences
(sigma 0.25) it says "less" about 8% of the time at n = 5. Two-sided, each
direction keeps to 2.5% plus the skew, under 5% at n = 3, 5 and 10
(`tests/test_claims_calibration.py` simulates it). Where every seed gives the
same difference the t statistic is undefined, and the exact sign-flip test
decides: n equal differences give 1/2^n one-sided.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from .paired import all_equal


def one_sided_p(diffs, shift: float, alternative: str) -> np.ndarray:
    """p-value of "the mean difference is not `alternative` ("greater"/"less") than `shift`", per row.

    The t-test where the differences vary; the exact sign-flip test on equal
    differences (each sign equally likely under the null: 1/2^n when all n
    lie on the alternative's side, else 1).
    """
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with no spread; replaced below
        p = np.asarray(stats.ttest_1samp(d, shift, axis=-1, alternative=alternative).pvalue, dtype=float)
    tied = all_equal(d)
    if np.any(tied):
        centre = np.median(d, axis=-1) - shift
        beyond = centre > 0 if alternative == "greater" else centre < 0
        p = np.where(tied, np.where(beyond, 0.5**n, 1.0), p)
    return p


def directional_p(diffs) -> tuple[np.ndarray, np.ndarray]:
    """(two-sided p, sign) per row: the p that decides a greater/less claim, and which way the data lean."""
    greater, less = one_sided_p(diffs, 0.0, "greater"), one_sided_p(diffs, 0.0, "less")
    return np.minimum(1.0, 2 * np.minimum(greater, less)), np.where(greater <= less, 1, -1)


def within_p(diffs, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """(p inside, p outside) per row for a claim "the difference lies within +-tolerance".

    p inside < 0.05 exactly when the 95% interval lies inside the tolerance
    (two one-sided tests at 2.5%); p outside < 0.05 when it lies wholly beyond one edge.
    """
    inside = 2 * np.maximum(one_sided_p(diffs, -tolerance, "greater"), one_sided_p(diffs, tolerance, "less"))
    outside = 2 * np.minimum(one_sided_p(diffs, tolerance, "greater"), one_sided_p(diffs, -tolerance, "less"))
    return np.minimum(1.0, inside), np.minimum(1.0, outside)
