"""Run the real service as a uvicorn subprocess on 127.0.0.1, for integration tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loadtests.processes import wait_for

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def logs_with(self, text: str, seconds: float = 10) -> str:
        """The logs once ``text`` is in them: a request's access line follows its response."""
        deadline = time.monotonic() + seconds
        while text not in (logs := self.logs()):
            assert time.monotonic() < deadline, f"{text!r} not logged in {seconds} s"
            time.sleep(0.05)
        return logs


@contextmanager
def run_server(
    tmp_path: Path, env: dict[str, str] | None = None, wait: str | None = "/readyz"
) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    # The start-up calibration is tested where it is the subject; elsewhere the default plan
    # starts servers faster.
    full_env = {
        **os.environ,
        "BRUM_HOST": "127.0.0.1",
        "BRUM_PORT": str(port),
        "BRUM_CALIBRATE": "false",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=full_env, stdout=out, stderr=out
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        if wait is not None:
            wait_for(server.url, wait, time.monotonic() + 60, process)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Terminate a process this test started, and kill it if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_prometheus(binary: str, config: Path, work: Path) -> tuple[subprocess.Popen, str]:
    """A real Prometheus on a free loopback port, with ``config``; returns it and its URL."""
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
    return process, f"http://127.0.0.1:{port}"


def prometheus_binary() -> str:
    """The prometheus binary: skipped where it is missing, except in CI, where it must run."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    return binary
