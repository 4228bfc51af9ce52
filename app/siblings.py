"""What a serving process knows of the others the supervisor started beside it (app/supervisor.py).

Each process is pinned to its own share of the cores, so under load the processes never run on
one another's cores. A lone text is the exception: at one connection the other processes have
nothing to do, and on one core of two it was answered 0.18 ms later than by a single process on
both (L3, p50 0.94 against 0.77 ms). So every process also loads a session whose helper threads
are pinned to the other processes' cores, and runs a lone text on it only while no other process
has a connection open: 0.85 ms (BENCHMARKS.md, 2026-12-07). The count of open connections per
process lives in memory the processes share (a ``memfd`` the supervisor made), one slot each.

Readiness is shared the same way: the kernel spreads new connections over every process's
socket, so the container is ready only once every process is. A process that answered /readyz
for itself alone let a probe pass while its sibling still loaded, and that sibling's share of the
traffic got 503.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

SLOT_BYTES = 8  # one signed 64-bit count a process: written whole, never torn on 64-bit CPUs


def shared_counts(processes: int) -> int:
    """A file descriptor of zeroed slots in memory, for the processes to inherit: ``processes``
    connection counts, then as many readiness flags."""
    fd = os.memfd_create("brum-connections")  # the processes get it through pass_fds
    os.ftruncate(fd, 2 * processes * SLOT_BYTES)
    return fd


def _half(fd: int, slot: int, second: bool) -> memoryview:
    """One half of the shared slots: the connection counts, or (``second``) the readiness flags."""
    slots = memoryview(mmap.mmap(fd, 0)).cast("q")
    processes = len(slots) // 2
    if not 0 <= slot < processes:
        raise ValueError(f"slot {slot} of {processes}")
    return slots[processes:] if second else slots[:processes]


class ConnectionCounts:
    """Open connections per process, in shared memory: each process writes its own slot and
    reads the others'."""

    def __init__(self, fd: int, slot: int) -> None:
        self._counts = _half(fd, slot, second=False)
        self.slot = slot

    def publish(self, open_connections: int) -> None:
        self._counts[self.slot] = open_connections

    def elsewhere(self) -> int:
        """Connections open in the other processes."""
        return sum(self._counts) - self._counts[self.slot]


class ReadinessFlags:
    """Whether each process is ready, in shared memory: each process writes its own flag, and
    is ready to a probe only while every flag is set."""

    def __init__(self, fd: int, slot: int) -> None:
        self._flags = _half(fd, slot, second=True)
        self.slot = slot

    def publish(self, ready: bool) -> None:
        self._flags[self.slot] = int(ready)

    def all_ready(self) -> bool:
        return all(self._flags)


@dataclass(frozen=True)
class Share:
    """One process's part of the machine: its cores, all the processes' cores, and the shared
    counts of their connections and flags of their readiness."""

    cores: tuple[int, ...]
    machine: tuple[int, ...]
    counts: ConnectionCounts
    readiness: ReadinessFlags

    @property
    def helper_cores(self) -> tuple[int, ...]:
        """Where a lone text's helper threads run: every core but the first of this process's,
        which the event loop, and the run's own thread, keep."""
        return tuple(core for core in self.machine if core != self.cores[0])


class CountedConnections(set[Any]):
    """uvicorn's set of open connections (``ServerState.connections``), which publishes its
    size to the shared counts whenever a connection opens or closes."""

    def __init__(self, counts: ConnectionCounts) -> None:
        super().__init__()
        self._counts = counts

    def add(self, connection: Any) -> None:
        super().add(connection)
        self._counts.publish(len(self))

    def discard(self, connection: Any) -> None:
        super().discard(connection)
        self._counts.publish(len(self))
