"""Loading onnxruntime so that it may use AMX in a process held to one CPU.

When it loads, onnxruntime 1.32 checks that AMX tile registers survive a move between the first
two CPUs of the process's affinity mask, and leaves AMX off where it cannot make the move. In a
process held to one CPU its int8 products then run on AVX-512 VNNI: about a fifth fewer texts/s
at batch 32 on a Xeon with AMX (BENCHMARKS.md, 2026-12-07). A process held there by its affinity
alone (``taskset``, ``numactl``, systemd's ``CPUAffinity``) may widen it for the load and return;
one held by a cpuset (``docker run --cpuset-cpus``, Kubernetes' static CPU manager) may not, and
is left as it is.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

logger = logging.getLogger("brum")

TASKS = Path("/proc/self/task")


def load_onnxruntime() -> None:
    """Import onnxruntime, with a second CPU in the mask while it loads where this process is
    held to one CPU and may have another; every thread's mask is as it was afterwards."""
    held = widened = os.sched_getaffinity(0)
    if len(held) == 1:
        # numpy's BLAS starts threads by the CPUs it sees: it should see the process's one.
        importlib.import_module("numpy")
        try:  # a cpuset keeps only its own CPUs
            os.sched_setaffinity(0, held | set(range(os.cpu_count() or 1)))
            widened = os.sched_getaffinity(0)
        except OSError as exc:  # e.g. refused by a seccomp profile: load it as it is
            logger.info("onnxruntime loaded on one CPU (%s): int8 may run without AMX", exc)
    try:
        importlib.import_module("onnxruntime")
    finally:
        if widened != held:
            _hold_every_thread(held)
    if widened != held:
        logger.info(
            "onnxruntime loaded with CPUs %s in the mask, so that it could check AMX; serving "
            "on CPU %s",
            sorted(widened),
            next(iter(held)),
        )


def _hold_every_thread(cpus: set[int]) -> None:
    for task in TASKS.iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # a thread that ended since the folder was listed
            continue
