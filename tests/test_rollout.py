"""The rollout controller end to end with real parts on loopback: a real brum, a real Prometheus
scraping it every second, the controller as its own process, and a feedback generator that
sends each prediction's true label, making a variant's answers wrong at a chosen rate.

An equally accurate candidate is promoted through every step (the controller killed and
restarted on the way resumes at its step); a candidate 10 points less accurate is rolled back;
a candidate over the latency gate is rolled back. Steps last seconds here.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.core.experiment import Rollout
from app.rollout.controller import PrometheusEvidence, gained
from tests.server import (
    ROOT,
    Server,
    free_port,
    prometheus_binary,
    run_server,
    start_prometheus,
    stop,
)
from tests.synthetic import write_synthetic_variant

TOKEN = "rollout-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LABELS = ["balance", "greeting", "transfer", "weather"]


@pytest.fixture(scope="module")
def brum(tmp_path_factory, clinc) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("rollout")
    repository = work / "repository"
    texts = clinc.splits["train"].texts[:1000]
    for name, depth, hidden in (("control", 1, 64), ("twin", 1, 64), ("sluggish", 24, 1024)):
        write_synthetic_variant(repository / name, texts, LABELS, depth=depth, hidden=hidden)
    env = {
        "BRUM_MODEL_REPOSITORY": str(repository),
        "BRUM_ADMIN_TOKEN": TOKEN,
        "BRUM_DEFAULT_VARIANT": "control",
        "BRUM_INLINE_MAX_MS": "0",
    }
    with run_server(work, env) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(brum: Server, tmp_path_factory) -> Iterator[str]:
    binary = prometheus_binary()
    work = tmp_path_factory.mktemp("prometheus")
    target = brum.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "brum", "static_configs": [{"targets": [target]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    process, url = start_prometheus(binary, work / "prometheus.yml", work)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                up = httpx.get(url + "/api/v1/query", params={"query": "up"}).json()
                if up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1":
                    break
            except (httpx.TransportError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        yield url
    finally:
        stop(process)


class FeedbackGenerator:
    """Predictions with random user keys, each followed by its true label: the label served
    with probability ``accuracy[variant]``, another one otherwise."""

    def __init__(self, url: str, accuracy: dict[str, float], seed: int = 0) -> None:
        self.url, self.accuracy = url, accuracy
        self.rng = random.Random(seed)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post(
                    "/v1/predict",
                    json={"text": f"text {self.rng.random()}"},
                    headers={"X-User-ID": str(self.rng.random())},
                ).json()
                predicted = answer["predictions"][0]["label"]
                right = self.rng.random() < self.accuracy[answer["variant"]]
                label = predicted if right else next(x for x in LABELS if x != predicted)
                client.post(
                    "/v1/feedback", json={"request_id": answer["request_id"], "label": label}
                )
                self.sent += 1

    def __enter__(self) -> FeedbackGenerator:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


class Controller:
    def __init__(self, brum: Server, prometheus: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        command = [
            sys.executable,
            "-m",
            "app.rollout",
            "--brum",
            brum.url,
            "--prometheus",
            prometheus,
            "--interval",
            "0.5",
            "--metrics-port",
            str(self.port),
        ]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "BRUM_ADMIN_TOKEN": TOKEN},
                stdout=out,
                stderr=out,
            )

    def metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.TransportError:
            return None
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{")
        ]
        return values[0] if values else None


def start_rollout(brum: Server, candidate: str, **gates) -> None:
    experiment = {
        "name": f"rollout-{candidate}-{time.monotonic_ns()}",
        "arms": [{"variant": "control", "weight": 1}],
        "rollout": {
            "control": "control",
            "candidate": candidate,
            "steps": [20, 50, 100],
            "gates": {
                "accuracy_margin": 0.05,
                "min_judgments": 50,
                "p99_latency_ms": 1000,
                "max_error_ratio": 0.05,
                **gates,
            },
            "min_step_seconds": 3,
            "max_step_seconds": 60,
        },
    }
    response = httpx.put(brum.url + "/admin/experiment", json=experiment, headers=AUTH)
    assert response.status_code == 200, response.text


def rollout_state(brum: Server) -> dict:
    return httpx.get(brum.url + "/admin/experiment", headers=AUTH).json()["rollout"]


def wait_for_status(brum: Server, status: str, limit: float) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = rollout_state(brum)
        if state["status"] == status:
            return state
        if state["status"] != "running":
            pytest.fail(f"rollout {state['status']}, expected {status}: {state['reason']}")
        time.sleep(0.2)
    pytest.fail(f"rollout still {rollout_state(brum)} after {limit} s")


def test_an_equally_accurate_candidate_is_promoted_and_a_restarted_controller_resumes(
    brum, prometheus, tmp_path
):
    start_rollout(brum, "twin")
    controller = Controller(brum, prometheus, tmp_path / "controller.log")
    try:
        with FeedbackGenerator(brum.url, {"control": 0.98, "twin": 0.98}):
            deadline = time.monotonic() + 90
            while rollout_state(brum)["step"] < 1:
                assert time.monotonic() < deadline, "never reached the second step"
                assert rollout_state(brum)["status"] == "running", rollout_state(brum)["reason"]
                time.sleep(0.2)
            controller.process.send_signal(signal.SIGKILL)  # mid-rollout
            controller.process.wait()
            resumed_at = rollout_state(brum)["step"]
            controller = Controller(brum, prometheus, tmp_path / "controller.log")
            time.sleep(1)
            assert rollout_state(brum)["step"] >= resumed_at, "the new controller started over"
            promoted = wait_for_status(brum, "promoted", 90)
        experiment = httpx.get(brum.url + "/admin/experiment", headers=AUTH).json()
        assert experiment["arms"] == [{"variant": "twin", "weight": 1.0}]
        assert "every gate passed" in promoted["reason"]
        deadline = time.monotonic() + 10
        while controller.metric("brum_rollout_step") != 100:
            assert time.monotonic() < deadline, controller.metric("brum_rollout_step")
            time.sleep(0.2)
    finally:
        stop(controller.process)
    log = (tmp_path / "controller.log").read_text()
    assert '"action": "promote"' in log and '"evidence"' in log


def test_a_candidate_ten_points_less_accurate_is_rolled_back(brum, prometheus, tmp_path):
    start_rollout(brum, "twin", accuracy_margin=0.02)  # 10 points is far outside 2
    controller = Controller(brum, prometheus, tmp_path / "controller.log")
    try:
        with FeedbackGenerator(brum.url, {"control": 0.98, "twin": 0.88}, seed=1):
            state = wait_for_status(brum, "rolled-back", 90)
    finally:
        stop(controller.process)
    assert "accuracy worse" in state["reason"]
    arms = httpx.get(brum.url + "/admin/experiment", headers=AUTH).json()["arms"]
    assert arms == [{"variant": "control", "weight": 1.0}]


def test_a_candidate_over_the_latency_gate_is_rolled_back(brum, prometheus, tmp_path):
    start_rollout(brum, "sluggish", p99_latency_ms=2)
    controller = Controller(brum, prometheus, tmp_path / "controller.log")
    try:
        with FeedbackGenerator(brum.url, {"control": 0.98, "sluggish": 0.98}, seed=2):
            state = wait_for_status(brum, "rolled-back", 90)
    finally:
        stop(controller.process)
    assert "p99 latency" in state["reason"], state["reason"]


def test_a_restart_counts_from_zero():
    assert gained(5, [5, 7, 2, 4]) == 2 + 2 + 2
    assert gained(0, []) == 0


def test_the_evidence_counts_exactly_the_judgments_sent_since_the_rollout_began(brum, prometheus):
    """Prometheus's increase() would extrapolate to the window's edges and count judgments
    that never happened; the evidence a decision rests on is the judgments sent."""

    def scraped() -> bool:
        exported = sum(
            float(line.rsplit(" ", 1)[1])
            for line in httpx.get(brum.url + "/metrics").text.splitlines()
            if line.startswith("brum_feedback_total{")
        )
        rows = httpx.get(
            prometheus + "/api/v1/query", params={"query": "sum(brum_feedback_total)"}
        ).json()["data"]["result"]
        return bool(rows) and float(rows[0]["value"][1]) == exported

    def judge(client: httpx.Client, n: int, sent: dict) -> None:
        for i in range(n):
            answer = client.post("/v1/predict", json={"text": f"evidence {i}"}).json()
            predicted = answer["predictions"][0]["label"]
            label = predicted if i % 3 else next(x for x in LABELS if x != predicted)
            judged = client.post(
                "/v1/feedback", json={"request_id": answer["request_id"], "label": label}
            )
            assert judged.status_code == 200, judged.text
            correct, total = sent.get(answer["variant"], (0, 0))
            sent[answer["variant"]] = (correct + (label == predicted), total + 1)

    with httpx.Client(base_url=brum.url, timeout=30) as client:
        judge(client, 20, {})  # before the rollout: not its evidence
        deadline = time.monotonic() + 30
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never scraped the feedback"
            time.sleep(0.2)
        time.sleep(1.5)  # a scrape after the baseline, so the start lies between two samples
        started = time.time()
        sent: dict = {}
        judge(client, 37, sent)
        time.sleep(2.5)
        deadline = time.monotonic() + 30
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never scraped the feedback"
            time.sleep(0.2)
    (variant,) = sent
    other = next(v for v in ("control", "twin") if v != variant)
    rollout = Rollout(control=variant, candidate=other, started_at=started, step_started_at=started)
    with httpx.Client(base_url=prometheus, timeout=10) as client:
        evidence = PrometheusEvidence(client).gather(rollout, time.time())
    assert evidence.control == sent[variant]
    assert evidence.candidate == (0, 0)
