"""Servers under load as processes: start one and wait until it is ready, and read the CPU time and
memory of its whole process tree (servers with worker processes count them too) from /proc."""

from __future__ import annotations

import ipaddress
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(_stat_fields(int(stat.parent.name))[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending += children.get(current, [])
    return tree


def _tree_sum(pid: int, read) -> float:
    total = 0
    for member in process_tree(pid):
        try:
            total += read(member)
        except (OSError, RuntimeError):
            continue  # exited meanwhile
    return total


def tree_cpu_seconds(pid: int) -> float:
    return _tree_sum(pid, cpu_seconds)


def tree_rss_bytes(pid: int) -> int:
    """RSS summed over the tree (pages shared between processes count once per process)."""
    return int(_tree_sum(pid, rss_bytes))


@contextmanager
def running_service(
    env: dict[str, str],
    url: str,
    command: Sequence[str] = ("-m", "app"),
    ready_path: str = "/readyz",
    python: str = sys.executable,
    log: Path | None = None,
    timeout: float = 120,
    cwd: Path = ROOT,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[tuple[subprocess.Popen, float]]:
    """Start ``python command``, wait for ``ready_path`` to answer 200, yield the process with its
    start-to-ready time, then stop it and whatever it started. Output goes to ``log``, if given;
    ``preexec_fn`` runs in the child before it starts (e.g. joining a cgroup)."""
    started = time.perf_counter()
    output = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [python, *command],
        cwd=cwd,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    try:
        # One client for every poll: a new one per poll costs 0.7 of a core at this rate, taken
        # from the server while it starts (and from brum's calibration of the cores).
        with httpx.Client(timeout=1) as client:
            while True:
                try:
                    if client.get(url + ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.perf_counter() - started > timeout:
                    tail = log.read_text(errors="replace")[-2000:] if log else ""
                    raise RuntimeError(f"{command}: not ready ({process.poll()=}): {tail}")
                time.sleep(0.01)
        yield process, time.perf_counter() - started
    finally:
        stop(process)
        if log:
            output.close()


def _identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) while the process runs, so a reused pid is never mistaken for it."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return None if fields[0] in "ZX" else (pid, fields[19])


def stop(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the server, then SIGKILL whatever of its tree outlives ``grace`` seconds."""
    descendants = [i for i in map(_identity, process_tree(process.pid)[1:]) if i]
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    deadline = time.monotonic() + grace
    for identity in descendants:
        while _identity(identity[0]) == identity and time.monotonic() < deadline:
            time.sleep(0.05)
        if _identity(identity[0]) == identity:
            os.kill(identity[0], signal.SIGKILL)


def listening_addresses(pid: int) -> set[str]:
    """The TCP addresses ("host:port") the process tree of ``pid`` listens on."""
    inodes = set()
    for member in process_tree(pid):
        try:
            links = [str(fd.readlink()) for fd in Path(f"/proc/{member}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_address(fields[1]))
    return found


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net shows each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(words)}:{int(port, 16)}"


def only_loopback(addresses: set[str]) -> bool:
    for address in addresses:
        ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
        ip = getattr(ip, "ipv4_mapped", None) or ip
        if not ip.is_loopback:
            return False
    return True


def wait_for(url: str, path: str, deadline: float, process: subprocess.Popen) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode} before {url}{path} was 200"
            )
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url}{path} not 200 in time")
