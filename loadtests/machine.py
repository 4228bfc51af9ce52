"""The machine's CPU time, all processes together, from ``/proc/stat``: what a benchmark compares
with what the processes it started used, to see how much CPU other work took meanwhile.

A peer benchmark on a shared VM ranks a server low if something else was busy while it ran: in one
run here brum's first L3 round, with a linter and a commit run beside it, served 1,152 texts/s at
32 connections, its second 1,760 (BENCHMARKS.md, 2026-12-07). The report says so beside the figure.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/stat")
TICK = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """Seconds summed over every CPU: ``busy`` running anything (user, system, interrupts),
    ``stolen`` by the hypervisor for other guests."""

    busy: float
    stolen: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.busy - other.busy, self.stolen - other.stolen)


def machine_cpu() -> CpuTimes:
    """The machine's CPU time so far; zero where ``/proc/stat`` cannot be read (not Linux)."""
    try:
        first = STAT.read_text().split("\n", 1)[0]
    except OSError:
        return CpuTimes(0.0, 0.0)
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first.split()[1:9])
    return CpuTimes((user + nice + system + irq + softirq) * TICK, steal * TICK)


def own_cpu_seconds() -> float:
    """CPU of this process and of the children it has waited for (wrk, once it has ended)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
