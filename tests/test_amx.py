"""onnxruntime loaded with a second CPU in the mask by a process held to one, so that its AMX check
can run; every thread back on the one CPU afterwards, and a cpuset left as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from loadtests.cgroup import cpu_group, limits_available
from tests.server import ROOT, run_server

# Records the mask this process had when onnxruntime was imported, then every thread's mask.
CHILD = """
import importlib.abc, json, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime":
            seen.append(sorted(os.sched_getaffinity(0)))
        return None
sys.meta_path.insert(0, Watch())
if len(sys.argv) > 1:
    os.sched_setaffinity(0, {int(sys.argv[1])})
from app.runtime.amx import load_onnxruntime
load_onnxruntime()
threads = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"seen": seen, "threads": threads}))
"""

two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def load_in_child(*args: str, preexec_fn=None) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=preexec_fn,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(done.stdout), done.stderr


@two_cpus
def test_a_process_held_to_one_cpu_loads_it_seeing_two_and_is_held_again():
    cpu = max(os.sched_getaffinity(0))
    result, _ = load_in_child(str(cpu))
    (seen,) = result["seen"]
    assert cpu in seen and len(seen) >= 2
    assert set(map(tuple, result["threads"].values())) == {(cpu,)}


@two_cpus
def test_a_process_on_several_cpus_loads_it_as_it_is():
    result, _ = load_in_child()
    assert result["seen"] == [sorted(os.sched_getaffinity(0))]


@pytest.mark.skipif(
    not limits_available() or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs and a writable cgroup v1 (root)",
)
def test_a_cpuset_of_one_cpu_is_left_as_it_is():
    cpu = max(os.sched_getaffinity(0))
    with cpu_group(cpus=[cpu]) as group:
        result, _ = load_in_child(preexec_fn=group.enter)
    assert result["seen"] == [[cpu]]
    assert set(map(tuple, result["threads"].values())) == {(cpu,)}


@two_cpus
def test_the_service_held_to_one_cpu_loads_it_seeing_two_and_serves_on_the_one(tmp_path: Path):
    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    os.sched_setaffinity(0, {cpu})  # the server inherits it, as from `taskset`
    try:
        with run_server(tmp_path) as server:
            os.sched_setaffinity(0, mine)
            answer = httpx.post(server.url + "/v1/predict", json={"text": "what is my balance"})
            assert answer.status_code == 200
            tasks = Path(f"/proc/{server.process.pid}/task").iterdir()
            assert {tuple(sorted(os.sched_getaffinity(int(t.name)))) for t in tasks} == {(cpu,)}
    finally:
        os.sched_setaffinity(0, mine)
    assert f"so that it could check AMX; serving on CPU {cpu}" in server.logs()
