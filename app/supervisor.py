"""Several serving processes on one port (``BRUM_PROCESSES``): the Python of that many requests
runs at once.

One process parses a request's HTTP, routes it and writes its answer on one event loop, under one
GIL: on 2 cores at 32 connections that loop held the GIL 58% of the time, and two processes served
up to 30% more from 8 to 64 connections on L3, with a lower p99, and 7% less at one connection
(BENCHMARKS.md, 2026-12-07; on L6 their gain under load differed between runs). Each process is
what a replica is (DESIGN.md, "Scale-out"), so the processes share what replicas share:

- the port: each process listens on its own socket bound to it here (``SO_REUSEPORT``);
- Prometheus metrics, through prometheus_client's multiprocess mode: each process writes its series
  to files in one folder (``PROMETHEUS_MULTIPROC_DIR``), and any process's /metrics sums them;
- a feedback key, made here when ``BRUM_FEEDBACK_KEY`` is unset, so that any process judges the
  feedback token another one issued;
- the cores: each process is pinned to its own share of them, which its start-up calibration
  measures as its machine, except for lone texts: while no other process has a connection open,
  one runs on every core (app/siblings.py), as in a single process.

A process that exits while the others serve stops them all, and the supervisor exits with its
code: the orchestrator restarts the container, as it would a replica that died. SIGTERM and
SIGINT are passed on to every process, which drains as a single one does.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from app.logs import configure_logging
from app.runtime.cores import capped_by_quota, cpu_quota
from app.settings import Settings
from app.siblings import ConnectionCounts, ReadinessFlags, Share, shared_counts

logger = logging.getLogger("brum.supervisor")

METRICS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"


def supervise(settings: Settings) -> None:
    cores = sorted(os.sched_getaffinity(0))
    quota = cpu_quota()
    usable = capped_by_quota(len(cores), quota)
    if settings.processes > usable:
        logger.error(
            "BRUM_PROCESSES=%d but this process may use %d core(s): at most one process a core",
            settings.processes,
            usable,
        )
        sys.exit(2)
    if quota is not None and quota < len(cores):
        logger.warning(
            "a CPU quota of %.3g CPUs, under the %d cores the processes are pinned to: they are "
            "throttled in turn. Under 1.5 CPUs on 2 cores, two processes served 10-17%% less than "
            "one at 32 connections, at twice the p99 (BENCHMARKS.md, 2026-12-07); under a quota, "
            "BRUM_PROCESSES=1",
            quota,
            len(cores),
        )
    listeners = _listeners(settings.host, settings.port, settings.processes)
    made_folder = METRICS_FOLDER not in os.environ
    env = dict(os.environ)
    if made_folder:
        env[METRICS_FOLDER] = tempfile.mkdtemp(prefix="brum-metrics-")
    folder = Path(env[METRICS_FOLDER])
    for stale in folder.glob("*.db"):  # an earlier run's series would be summed with these
        stale.unlink()
    if settings.feedback_key is None:
        env["BRUM_FEEDBACK_KEY"] = secrets.token_urlsafe(32)
    if settings.redis_url is None:
        logger.warning(
            "no BRUM_REDIS_URL: any of the %d processes judges a feedback token, but feedback by "
            "request id alone reaches the process that served it only one time in %d",
            settings.processes,
            settings.processes,
        )
    cuts = _shares(cores, settings.processes)
    counts = shared_counts(len(cuts))
    # Kept, so that subprocess never reaps them itself: this module does (_wait).
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def pass_on(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):  # not yet reaped: none of them a stranger's pid
            os.kill(pid, sig)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    logger.info(
        "%d serving processes on %s:%d", len(cuts), settings.host, listeners[0].getsockname()[1]
    )
    for index, (listener, share) in enumerate(zip(listeners, cuts, strict=True)):
        command = [sys.executable, "-m", "app.supervisor", str(listener.fileno()), str(counts)]
        command += [str(index), ",".join(map(str, share)), ",".join(map(str, cores))]
        child = subprocess.Popen(command, env=env, pass_fds=[listener.fileno(), counts])
        children[child.pid] = child
        logger.info("serving process %d: pid %d, cores %s", index, child.pid, share)
        listener.close()  # the process holds its own copy now
    os.close(counts)
    code = _wait(children, lambda: stopping)
    if made_folder:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(code)


def _shares(cores: Sequence[int], count: int) -> list[list[int]]:
    """``cores`` cut into ``count`` runs of consecutive cores, as even as they can be."""
    size, extra = divmod(len(cores), count)
    result, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        result.append(list(cores[start:end]))
        start = end
    return result


def _listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket a process, all on the same port (``SO_REUSEPORT``): the kernel
    spreads new connections evenly over them, where processes taking turns at one socket leave
    whichever wakes first with most of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listeners: list[socket.socket] = []
    for _ in range(count):
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind((host, port))
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", host, port, exc)
            sys.exit(1)
        port = listener.getsockname()[1]  # port 0: the others take the one the first got
        listener.listen(2048)
        listeners.append(listener)
    return listeners


def _wait(children: dict[int, subprocess.Popen[bytes]], stopping: Callable[[], bool]) -> int:
    """Reap every process, taking each out of ``children``; the first to exit unasked stops the
    others. The exit code: that process's (1 if it exited 0), else the worst of theirs (128 + N
    for a process killed by signal N, as a shell reports it)."""
    codes: list[int] = []
    first_unasked: int | None = None
    while children:
        pid, status = os.wait()
        child = children.pop(pid, None)
        if child is None:
            continue
        child.returncode = os.waitstatus_to_exitcode(status)
        code = 128 - child.returncode if child.returncode < 0 else child.returncode
        codes.append(code)
        if stopping() or first_unasked is not None:
            continue
        first_unasked = code or 1
        logger.error("serving process (pid %d) exited with %d: stopping the others", pid, code)
        for other in children:
            os.kill(other, signal.SIGTERM)
    return first_unasked if first_unasked is not None else max(codes, default=0)


def _serve_share(fd: int, share: Share) -> None:
    """One serving process, on its share of the cores, on the socket the supervisor bound."""
    from app.server import serve  # the app, which the supervisor itself does without

    # Pinned only once onnxruntime is loaded: loaded in a process already held to one core, it
    # runs int8 products without AMX, about a fifth slower, under `taskset` too (BENCHMARKS.md,
    # 2026-12-07).
    os.sched_setaffinity(0, share.cores)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    serve(settings, [socket.socket(fileno=fd)], share)


def _cores(text: str) -> tuple[int, ...]:
    return tuple(int(core) for core in text.split(","))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one of the supervisor's serving processes")
    parser.add_argument("fd", type=int, help="the listening socket's file descriptor")
    parser.add_argument(
        "counts", type=int, help="the shared connection counts' and readiness flags' descriptor"
    )
    parser.add_argument("slot", type=int, help="this process's slot in them")
    parser.add_argument("cores", type=_cores, help="the cores this process runs on: 0,1")
    parser.add_argument("machine", type=_cores, help="every process's cores: 0,1,2,3")
    arguments = parser.parse_args()
    counts = ConnectionCounts(arguments.counts, arguments.slot)
    readiness = ReadinessFlags(arguments.counts, arguments.slot)
    _serve_share(arguments.fd, Share(arguments.cores, arguments.machine, counts, readiness))
