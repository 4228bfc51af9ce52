"""The cgroup that emulates a smaller machine: a real one where this process may make it (root on a
v1 or hybrid layout), and the errors where it may not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from loadtests.cgroup import ROOT, CgroupError, cpu_group, limits_available

# Two threads busy in C code for 1.5 s: numpy's matrix products release the GIL.
BUSY = """
import threading, time
import numpy as np

def spin():
    a = np.ones((300, 300))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        a @ a

threads = [threading.Thread(target=spin) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""

needs_cgroup = pytest.mark.skipif(
    not limits_available() or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs and a writable cgroup v1 (root)",
)


def cores_used(enter) -> float:
    """CPU seconds per wall second of a child busy on two threads."""
    started = time.perf_counter()
    before = os.times()
    subprocess.run([sys.executable, "-c", BUSY], check=True, preexec_fn=enter)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return cpu / (time.perf_counter() - started)


@needs_cgroup
def test_a_quota_and_a_cpuset_hold_a_child_and_the_group_goes_afterwards():
    with cpu_group(quota=0.5) as group:
        assert cores_used(group.enter) < 0.65
        folder = ROOT / "cpu" / group.name
        assert folder.is_dir()
    assert not folder.exists()
    with cpu_group(cpus=[0]) as group:
        assert cores_used(group.enter) < 1.1
    # The same work spreads over more than one core outside the group (on a quiet machine two).
    # Other work on the machine can hold one try under that, so up to three tries are made.
    assert any(cores_used(None) > 1.2 for _ in range(3))


def test_without_controllers_it_says_what_it_needs(tmp_path):
    assert not limits_available(tmp_path)
    with (
        pytest.raises(CgroupError, match="no writable cgroup v1 cpu controller"),
        cpu_group(quota=1, root=tmp_path),
    ):
        pass
    with pytest.raises(CgroupError, match="must be positive"), cpu_group(quota=0, root=tmp_path):
        pass
