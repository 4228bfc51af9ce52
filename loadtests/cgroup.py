"""A smaller machine, emulated with a cgroup v1: a cpuset (bare cores) and a CFS quota (a Kubernetes
CPU limit, ``docker run --cpus``) around the processes it holds.

Unlike a CPU affinity mask, a process cannot leave either: onnxruntime's default session pins its
pool threads to every core of the machine, which undoes an inherited mask (the naive peer used two
cores when "pinned" to one) but cannot widen a cpuset or escape a quota. Needs root and the v1
``cpu`` and ``cpuset`` controllers, as on this project's machines (a hybrid layout).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's default CFS period, as Kubernetes uses


class CgroupError(RuntimeError):
    pass


def _controller(root: Path, name: str) -> Path:
    folder = root / name
    probe = folder / ("cpuset.cpus" if name == "cpuset" else "cpu.cfs_quota_us")
    if not (probe.is_file() and os.access(folder, os.W_OK)):
        raise CgroupError(
            f"{folder}: no writable cgroup v1 {name} controller (needs root on a v1 or hybrid "
            "cgroup layout)"
        )
    return folder


def limits_available(root: Path = ROOT) -> bool:
    try:
        _controller(root, "cpu")
        _controller(root, "cpuset")
    except CgroupError:
        return False
    return True


@dataclass(frozen=True)
class CpuGroup:
    root: Path
    name: str
    controllers: tuple[str, ...]  # the v1 controllers it limits: cpuset, cpu

    def add(self, pid: int) -> None:
        """Move the process (all its threads) into the group; what it starts later stays in it."""
        for controller in self.controllers:
            (self.root / controller / self.name / "cgroup.procs").write_text(str(pid))

    def enter(self) -> None:
        """For ``subprocess.Popen(preexec_fn=...)``: the child joins before it runs anything."""
        self.add(os.getpid())


@contextmanager
def cpu_group(
    cpus: Collection[int] | None = None, quota: float | None = None, root: Path = ROOT
) -> Iterator[CpuGroup]:
    """A new group limited to ``cpus`` and to ``quota`` CPUs of time per second (either may be
    None); removed afterwards, which requires every process it held to have exited."""
    if quota is not None and quota <= 0:
        raise CgroupError(f"a CPU quota must be positive, not {quota}")
    name = f"brum-{uuid.uuid4().hex[:8]}"
    made: list[Path] = []
    try:
        if cpus is not None:
            cpuset = _controller(root, "cpuset")
            (cpuset / name).mkdir()
            made.append(cpuset / name)
            (cpuset / name / "cpuset.cpus").write_text(",".join(map(str, sorted(cpus))))
            (cpuset / name / "cpuset.mems").write_text((cpuset / "cpuset.mems").read_text())
        if quota is not None:
            cpu = _controller(root, "cpu")
            (cpu / name).mkdir()
            made.append(cpu / name)
            (cpu / name / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cpu / name / "cpu.cfs_quota_us").write_text(str(round(quota * PERIOD_US)))
        yield CpuGroup(root, name, tuple(folder.parent.name for folder in made))
    finally:
        for folder in made:
            folder.rmdir()
