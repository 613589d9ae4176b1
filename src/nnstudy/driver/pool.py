"""The pool: jobs in a given order onto whichever worker frees up first.

One simulation serves the plan (each job's worker and each worker's share of the cost) and the
clock (seconds until the last job ends), so the two never disagree about how a pool takes its jobs.
"""

from __future__ import annotations

import heapq


def first_free(costs: list[float], workers: int, busy: list[float] = ()) -> tuple[list[int], list[float]]:
    """(each job's worker, each worker's load) after the jobs, in order, each go to the worker that frees up
    first; `busy` are the workers' loads already (running jobs: more of them than `workers` on Ray, where the
    next job waits for one). Ties go to the lower-numbered worker, so the answer never varies."""
    loads = [float(b) for b in busy] + [0.0] * max(0, max(1, workers) - len(busy))
    free = [(load, w) for w, load in enumerate(loads)]
    heapq.heapify(free)
    where = []
    for cost in costs:
        total, w = heapq.heappop(free)
        where.append(w)
        loads[w] = total + cost
        heapq.heappush(free, (loads[w], w))
    return where, loads
