"""The CPU a run is charged: sampled on the thread's CPU clock, charged on the wall clock."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from app.core.cpu_meter import CpuMeter


def busy(seconds: float) -> str:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return "busy"


def idle(seconds: float) -> str:
    time.sleep(seconds)
    return "idle"


def counted(clock: Callable[[], float]) -> tuple[Callable[[], float], list[int]]:
    reads: list[int] = []

    def read() -> float:
        reads.append(1)
        return clock()

    return read, reads


def test_only_one_run_in_sample_every_reads_the_cpu_clock():
    clock, reads = counted(time.thread_time)
    meter = CpuMeter(clock, sample_every=4)
    for _ in range(9):
        assert meter.measure(lambda: busy(0.001))[0] == "busy"
    assert len(reads) == 2 * 3  # runs 1, 5 and 9, before and after each


def test_runs_on_a_cpu_are_charged_about_their_wall_time():
    meter = CpuMeter(time.thread_time, sample_every=4)
    charged = [meter.measure(lambda: busy(0.01))[1:] for _ in range(12)]
    wall = sum(seconds for seconds, _ in charged)
    cpu = sum(cpu for _, cpu in charged)
    assert 0.5 * wall < cpu <= 1.05 * wall


def test_runs_that_wait_are_charged_what_the_sampled_runs_spent_on_a_cpu():
    meter = CpuMeter(time.thread_time, sample_every=4)
    charged = [meter.measure(lambda: idle(0.01))[1:] for _ in range(12)]
    wall = sum(seconds for seconds, _ in charged)
    cpu = sum(cpu for _, cpu in charged)
    assert wall >= 0.12
    assert cpu < 0.1 * wall


def test_the_charge_follows_a_change_of_load():
    meter = CpuMeter(time.thread_time, sample_every=1)
    meter.measure(lambda: idle(0.01))
    assert meter.cpu_share < 0.1
    for _ in range(30):
        meter.measure(lambda: busy(0.005))
    assert meter.cpu_share == pytest.approx(1.0, abs=0.3)
