"""Which session runs a variant's lone texts: the one calibration chose, until the lone texts
served say another answers faster.

Calibration times one text on each candidate session for a few milliseconds at start-up.
Anything else busy on the machine then, such as a server that has just stopped, can make a
session of two threads look more than 1.25x slower than one, and it serves lone texts on one
thread for the life of the process: on a 2-core EPYC, 3 of 7 starts of a peer benchmark did so,
and each answered lone texts about a quarter later than the starts on two threads (BENCHMARKS.md,
2026-12-06). So the route keeps timing. Every ``EXPLORE_EVERY`` lone texts it runs a burst of
``EXPLORE_BURST`` on the other candidate. It keeps the last ``WINDOW`` timings of each candidate
and follows the one with the lower median once each has ``ENOUGH`` and the difference is
``MARGIN`` or more. A burst's first run wakes the session's threads and finds its caches cold,
which steady service does not do; it is not timed, nor is the first run back on the route's own
session after a burst.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

EXPLORE_EVERY = 512  # under 1% of lone texts, so a p99 stays on the route's own session
EXPLORE_BURST = 4
WINDOW = 15
ENOUGH = 6  # two bursts
MARGIN = 0.05

Session = TypeVar("Session")


class LoneRoute(Generic[Session]):
    """Candidate sessions for lone texts, calibration's choice first. ``on_switch`` is told the
    index of the session the route follows from then on."""

    def __init__(
        self, sessions: Sequence[Session], on_switch: Callable[[int], None] = lambda index: None
    ) -> None:
        if not sessions:
            raise ValueError("a lone route needs at least one session")
        self.sessions = tuple(sessions)
        self.current = 0
        self.on_switch = on_switch
        self._timings = [deque[float](maxlen=WINDOW) for _ in self.sessions]
        self._runs = 0
        self._explored = 0  # the session of the current burst
        self._exploring = 0  # runs of the burst still to come
        self._untimed: int | None = None  # the session whose next run wakes it

    def pick(self) -> int:
        """The index of the session the next lone text runs on."""
        if len(self.sessions) == 1:
            return 0
        self._runs += 1
        if self._exploring == 0 and self._runs % EXPLORE_EVERY == 0:
            self._explored = self._untimed = self._least_timed_other()
            self._exploring = EXPLORE_BURST
        if self._exploring:
            self._exploring -= 1
            if self._exploring == 0:
                self._untimed = self.current  # back after the burst, its caches are cold
            return self._explored
        return self.current

    def record(self, index: int, seconds: float) -> None:
        """How long a lone text took on ``sessions[index]``: the model's run alone."""
        if len(self.sessions) == 1:
            return
        if self._untimed == index:
            self._untimed = None
            return
        self._timings[index].append(seconds)
        if any(len(timings) < ENOUGH for timings in self._timings):
            return
        medians = [statistics.median(timings) for timings in self._timings]
        fastest = min(range(len(medians)), key=medians.__getitem__)
        if medians[fastest] < medians[self.current] * (1 - MARGIN):
            self.current = fastest
            self._exploring = 0  # the burst was on the session now followed
            self.on_switch(fastest)

    def medians(self) -> list[float | None]:
        """Each session's median lone time over its window; None before it has any."""
        return [statistics.median(t) if t else None for t in self._timings]

    def _least_timed_other(self) -> int:
        others = [i for i in range(len(self.sessions)) if i != self.current]
        return min(others, key=lambda i: len(self._timings[i]))
