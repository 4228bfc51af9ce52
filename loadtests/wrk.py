"""Drive a server with wrk (a C load generator: the client must not eat the cores it measures)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    bodies: list[dict],
    connections: int,
    seconds: float,
    threads: int = 1,
    cpus: Collection[int] | None = None,
) -> dict:
    """POST ``bodies`` in rotation over ``connections`` for ``seconds``; latency in ms. ``cpus``:
    the CPUs wrk runs on (default: this process's)."""
    if not wrk_available():
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as handle:
        handle.write("\n".join(json.dumps(b) for b in bodies) + "\n")
        handle.flush()
        command = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
            "--timeout",
            "10s",
            "-s",
            str(SCRIPT),
            url,
            "--",
            handle.name,
        ]
        pin = None if cpus is None else lambda: os.sched_setaffinity(0, cpus)
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, preexec_fn=pin
        ).stdout
    summary = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    seconds_run = summary["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": summary["requests"],
        "requests_per_second": round(summary["requests"] / seconds_run, 1),
        "errors": summary["socket_errors"] + summary["non_2xx"],
        "p50_ms": summary["p50_us"] / 1000,
        "p95_ms": summary["p95_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "seconds": round(seconds_run, 2),
    }
