"""The study's time left, said on every epoch line: each job's measured pace, the plan for the jobs to come, and
what the study does after their last epochs (its runs' figures, its report)."""

from __future__ import annotations

import time

from nnstudy.driver.pool import first_free


class StudyClock:
    """The study's time left, from each job's seconds per epoch as measured here: the wall time between its
    epochs, so that checkpoints, probes and the hand-over count too (the trainer's own epoch time leaves them out).

    A job's first epoch also holds its set-up: until it has a second, its pace is its trainer's epoch time, grown
    by the share that overheads add elsewhere. A job with no epoch yet takes the measured jobs' pace, scaled by
    their planned costs (`Job.cost`), and at least the time its first epoch has taken so far, set-up aside. Jobs
    start in plan order on the first free one of `slots` workers.

    After its last epoch a job still draws its runs' figures (`run_end` seconds a run, on its worker), and after
    the last job the study writes its report (`study_end` seconds): both measured in this study (`EndCosts`).
    """

    def __init__(self, slots: int = 1, now=time.monotonic, run_end: float = 0.0, study_end: float = 0.0):
        self.slots, self.now = max(1, slots), now
        self.run_end, self.study_end = run_end, study_end
        self.tail: dict[int, float] = {}  # job -> seconds it takes after its last epoch
        self.left: dict[int, int] = {}  # job -> epochs left
        self.unit: dict[int, float] = {}  # job -> planned cost of one epoch
        self.since: dict[int, float] = {}  # started job -> when its last epoch ended (or it started)
        self.epochs: dict[int, list[tuple[float, float]]] = {}  # job -> (wall seconds, trainer seconds) per epoch

    def plan(self, job: int, epochs_left: int, cost: float = 0.0, runs: int = 1) -> None:
        self.left[job] = epochs_left
        self.tail[job] = runs * self.run_end
        self.unit[job] = cost / epochs_left if epochs_left else 0.0

    def started(self, job: int) -> None:
        self.since[job] = self.now()

    def epoch(self, job: int, epochs_left: int, seconds: float = 0.0, restored: bool = False) -> None:
        now = self.now()
        if not restored and job in self.since:
            self.epochs.setdefault(job, []).append((now - self.since[job], seconds))
        self.since[job], self.left[job] = now, epochs_left

    def ended(self, job: int) -> None:
        for d in (self.left, self.since):
            d.pop(job, None)

    def pace(self, job: int) -> float | None:
        """Seconds per epoch of `job`, None while no job has finished an epoch."""
        seen = self.epochs.get(job, [])
        if later := _recent(seen):
            return sum(wall for wall, _ in later) / len(later)
        if seen:
            pairs = [pair for j in self.epochs for pair in _recent(self.epochs[j])]
            trainer = sum(s for _, s in pairs)
            return seen[0][1] * (sum(wall for wall, _ in pairs) / trainer if trainer > 0 else 1.0)
        measured = {j: p for j in self.epochs if (p := self.pace(j)) is not None}
        if not measured:
            return None
        guess = sum(p * self._scale(job, j) for j, p in measured.items()) / len(measured)
        if job in self.since:  # its first epoch has taken this long already
            guess = max(guess, self.now() - self.since[job] - self._setup())
        return guess

    def _setup(self) -> float:
        """Seconds a job takes to start: its first epoch's wall time beyond its later pace, where that shows."""
        shown = [seen[0][0] - self.pace(j) for j, seen in self.epochs.items() if len(seen) > 1]
        return max(0.0, sum(shown) / len(shown)) if shown else 0.0

    def _scale(self, job: int, other: int) -> float:
        """How much longer an epoch of `job` is planned to take than one of `other`: 4x at most either way, as
        the planned costs are counted FLOPs (cost.py), not the time they take on this machine."""
        if self.unit.get(job, 0.0) > 0 and self.unit.get(other, 0.0) > 0:
            return min(4.0, max(0.25, self.unit[job] / self.unit[other]))
        return 1.0

    def seconds_left(self) -> float:
        now, running, queued = self.now(), [], []
        for job, left in self.left.items():
            pace, tail = self.pace(job) or 0.0, self.tail.get(job, 0.0)
            if job in self.since:  # under way: at most its current epoch (or, after its last, its tail) is done
                running.append(max(0.0, left * pace + tail - min(now - self.since[job], pace if left else tail)))
            else:
                queued.append(left * pace + tail)
        return time_left(running, queued, self.slots) + self.study_end


def _recent(seen: list) -> list:
    """A job's last five epochs, never its first (it holds the job's set-up)."""
    return seen[max(1, len(seen) - 5):]


def time_left(running: list[float], queued: list[float], slots: int) -> float:
    """Seconds until the last job ends: the running jobs' seconds left, then each queued job, in order,
    on whichever worker frees up first."""
    return max(first_free(queued, slots, running)[1], default=0.0)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
