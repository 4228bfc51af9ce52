"""How many cores this process may really use: its CPU affinity, capped by a cgroup CPU quota.

A Kubernetes CPU limit (or ``docker run --cpus``) does not change the affinity mask: a container
limited to 2 CPUs on a 16-core node still sees 16. Sized by the mask, onnxruntime would start 16
threads and the quota would throttle them in turns; sized by the quota, it starts 2.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """The process's cgroup v2 path and its v1 ``cpu`` controller path, from /proc/self/cgroup."""
    unified = v1_cpu = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            unified = path
        elif "cpu" in controllers.split(","):
            v1_cpu = path
    return unified, v1_cpu


def _quota_v2(root: Path, path: str) -> float | None:
    """The tightest ``cpu.max`` from the process's cgroup up to the root (a parent's limit binds
    its children too)."""
    limits = []
    folder = root / path.lstrip("/")
    while True:
        limit = folder / "cpu.max"
        if limit.is_file():
            quota, period = limit.read_text().split()
            if quota != "max":
                limits.append(int(quota) / int(period))
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return min(limits, default=None)


def _quota_v1(root: Path, path: str) -> float | None:
    for folder in (root / "cpu" / path.lstrip("/"), root / "cpu"):
        quota_file = folder / "cpu.cfs_quota_us"
        if quota_file.is_file():
            quota = int(quota_file.read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            return quota / period if quota > 0 else None
    return None


def cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs' worth of time per second the cgroup allows, or None without a limit."""
    try:
        unified, v1_cpu = _cgroup_paths(proc_cgroup.read_text())
        if unified is not None and (root / "cgroup.controllers").is_file():
            return _quota_v2(root, unified)
        if v1_cpu is not None:
            return _quota_v1(root, v1_cpu)
        if unified is not None:  # hybrid layout: v2 mounted under unified/
            return _quota_v2(root / "unified", unified)
    except (OSError, ValueError):
        return None
    return None


def capped_by_quota(cores: int, quota: float | None) -> int:
    """``cores`` capped by a CPU quota rounded up (1.5 CPUs: 2 threads)."""
    return cores if quota is None else min(cores, max(1, math.ceil(quota)))


def available_cores() -> int:
    """Cores in the affinity mask, capped by the CPU quota."""
    return capped_by_quota(len(os.sched_getaffinity(0)), cpu_quota())
