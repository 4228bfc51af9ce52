"""Which session runs a variant's lone texts: the one calibration chose, until the lone texts
served say another answers faster.

Calibration times one text on each candidate session for a few milliseconds at start-up.
Anything else busy on the machine then, such as a server that has just stopped, can make a
session of two threads look more than 1.25x slower than one, and it serves lone texts on one
thread for the life of the process: on a 2-core EPYC, 3 of 7 starts of a peer benchmark did so,
and each answered lone texts about a quarter later than the starts on two threads (BENCHMARKS.md,
2026-12-06). So the route keeps timing, in duels: every ``EXPLORE_EVERY`` lone texts,
``BLOCK`` run on the other candidate, then ``BLOCK`` on the route's own session. Only duels are
compared, because on a VM the same session's median over 15 lone texts moved between 1.6 and
2.1 ms from one second to the next: a burst timed at one moment against a window timed at
another followed that noise and switched back and forth. The first run of each block wakes its
session's threads and finds its caches cold, which steady service does not do; it is not timed.
The route keeps the last ``WINDOW`` duel timings of each session and follows the one with the
lower median once each has ``ENOUGH``, if it is ``MARGIN`` or more faster.

One of several processes (app/siblings.py) may have a session whose helper threads run on the
other processes' cores: while they have connections open, lone texts run on the route's
``confined`` session, on the process's own cores, outside the duels.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

EXPLORE_EVERY = 512  # the other session runs under 1% of lone texts: a p99 stays the route's own
BLOCK = 4
WINDOW = 15  # five duels
ENOUGH = 6  # two duels
MARGIN = 0.05

Session = TypeVar("Session")


class LoneRoute(Generic[Session]):
    """Candidate sessions for lone texts, calibration's choice first. ``on_switch`` is told the
    index of the session the route follows from then on, and each session's median.
    ``confined``: the index of the session that runs on the process's own cores only, where
    some may not; None if all do."""

    def __init__(
        self,
        sessions: Sequence[Session],
        on_switch: Callable[[int, list[float]], None] = lambda index, medians: None,
        confined: int | None = None,
    ) -> None:
        if not sessions:
            raise ValueError("a lone route needs at least one session")
        if confined is not None and not 0 <= confined < len(sessions):
            raise ValueError(f"confined session {confined} of {len(sessions)}")
        self.sessions = tuple(sessions)
        self.confined = confined
        self.current = 0
        self.on_switch = on_switch
        self._timings = [deque[float](maxlen=WINDOW) for _ in self.sessions]
        self._runs = 0
        self._duel: deque[tuple[int, bool]] = deque()  # (session, timed) of the runs to come
        self._timed = False  # whether the run just picked is one the duel times

    def pick(self, crowded: bool = False) -> int:
        """The index of the session the next lone text runs on; ``crowded``: other processes
        have work, and only the confined session is the process's to run."""
        if crowded and self.confined is not None:
            self._timed = False
            return self.confined
        if len(self.sessions) == 1:
            return 0
        self._runs += 1
        if not self._duel and self._runs % EXPLORE_EVERY == 0:
            other = self._least_timed_other()
            for index in (other, self.current):
                self._duel.extend((index, run > 0) for run in range(BLOCK))
        if not self._duel:
            self._timed = False
            return self.current
        index, self._timed = self._duel.popleft()
        return index

    def record(self, index: int, seconds: float) -> None:
        """How long the lone text just picked took on ``sessions[index]``: the model's run."""
        if not self._timed:
            return
        self._timings[index].append(seconds)
        if self._duel or any(len(timings) < ENOUGH for timings in self._timings):
            return
        medians = [statistics.median(timings) for timings in self._timings]
        fastest = min(range(len(medians)), key=medians.__getitem__)
        if medians[fastest] < medians[self.current] * (1 - MARGIN):
            self.current = fastest
            self.on_switch(fastest, medians)

    def medians(self) -> list[float | None]:
        """Each session's median lone time over its window; None before it has any."""
        return [statistics.median(t) if t else None for t in self._timings]

    def _least_timed_other(self) -> int:
        others = [i for i in range(len(self.sessions)) if i != self.current]
        return min(others, key=lambda i: len(self._timings[i]))
