"""A run's status: the words the store keeps, and the groups of them the code asks about.

PENDING, then RUNNING once a job starts it, then DONE (or DIVERGED: a loss became non-finite, its
history stops there) when its last epoch is in, or FAILED (see driver/run_life.py).
"""

PENDING, RUNNING, DONE, DIVERGED, FAILED = "pending", "running", "done", "diverged", "failed"

ALL = (DONE, DIVERGED, FAILED, RUNNING, PENDING)  # in the order a person reads counts: finished first
TRAINED = (DONE, DIVERGED)  # trained to its end: its numbers are in
ENDED = (DONE, DIVERGED, FAILED)  # nothing more happens to it without a rerun
TO_TRAIN = (PENDING, RUNNING)  # what `nnstudy run` trains (a RUNNING run in the store was cut short)
