"""Cores the process may use: the affinity mask capped by a cgroup CPU quota, v1 or v2."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.runtime.cores import cpu_quota

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_tightest_limit_up_the_tree(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "kubepods" / "cpu.max", "150000 100000\n")  # the pod: 1.5 CPUs
    write(root / "kubepods" / "brum" / "cpu.max", "max 100000\n")  # the container: no limit
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/brum\n")
    assert cpu_quota(root, proc) == 1.5


def test_cgroup_v1_reads_the_cfs_quota(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "200000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cpu_quota(root, proc) == 2.0


def test_no_limit_and_unreadable_files_mean_no_quota(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("1:cpu:/\n")
    assert cpu_quota(root, proc) is None
    assert cpu_quota(tmp_path / "absent", tmp_path / "absent-proc") is None


CPU_V1 = Path("/sys/fs/cgroup/cpu")


@pytest.mark.skipif(
    not (os.access(CPU_V1, os.W_OK) and (CPU_V1 / "cpu.cfs_quota_us").exists()),
    reason="needs a writable cgroup v1 cpu controller (root on a v1 or hybrid host)",
)
def test_a_real_quota_caps_the_cores_a_process_uses():
    group = CPU_V1 / f"brum-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")  # one CPU
        code = (
            "import os, sys\n"
            f"open('{group}/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "from app.runtime.cores import available_cores\n"
            "print(available_cores())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "1"
    finally:
        group.rmdir()
