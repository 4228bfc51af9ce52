"""What a model run costs in CPU, without reading a CPU clock around every run.

A thread's or a process's CPU clock is read by a system call (``clock_gettime``), where the wall
clock is read in user space. Read before and after every batch, it cost 5-10% of the texts served
per second at 32 connections on a 2-core EPYC (BENCHMARKS.md, 2026-12-07), though one read takes
0.6 us there. The likely reason, not proven: the kernel brings the thread's CPU accounting up to
date for the call and may preempt the thread as it returns, with the GIL held, while the event
loop and the other inference thread wait (without a third thread wanting the GIL, both clocks
cost the same). So every run is timed on the wall clock, one in ``SAMPLE_EVERY`` on the CPU
clock as well, and each run is charged its wall time times the share of it the sampled runs
spent on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

SAMPLE_EVERY = 16
# How far one sampled run moves the share: follows a change of load within a few hundred runs.
SMOOTHING = 0.2

Result = TypeVar("Result")


class CpuMeter:
    """Times runs on the wall clock and charges each its estimated CPU seconds by ``cpu_clock``
    (a thread's clock on one-thread sessions, the process's on a session of several threads)."""

    def __init__(self, cpu_clock: Callable[[], float], sample_every: int = SAMPLE_EVERY) -> None:
        self.cpu_clock = cpu_clock
        self.sample_every = sample_every
        self.cpu_share = 1.0  # CPU seconds per wall second of a run, as last sampled
        self._runs = 0

    def measure(self, run: Callable[[], Result]) -> tuple[Result, float, float]:
        """``run()``'s result, its wall seconds and the CPU seconds it is charged."""
        sampled = self._runs % self.sample_every == 0
        self._runs += 1
        cpu = self.cpu_clock() if sampled else 0.0
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        if sampled and seconds > 0:
            share = (self.cpu_clock() - cpu) / seconds
            weight = 1.0 if self._runs == 1 else SMOOTHING
            self.cpu_share += weight * (share - self.cpu_share)
        return result, seconds, seconds * self.cpu_share
