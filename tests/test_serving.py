"""Production serving against a real server on 127.0.0.1: batching, backpressure, experiments with
shadow and feedback, cost metrics, admin, drain on SIGTERM, structured logs.

Most tests serve synthetic fp32 variants (tests/synthetic.py): their answers do not depend on
batch mates, and their compute is set by their depth.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.cgroup import cpu_group, limits_available
from tests.server import ROOT, Server, free_port, run_server
from tests.synthetic import write_synthetic_variant

HIDDEN = 1024


@pytest.fixture(scope="module")
def repository(tmp_path_factory, clinc) -> Path:
    """``fast`` (1 dense layer), ``slow`` (3 layers: ~3x the compute), ``sluggish`` (24)."""
    root = tmp_path_factory.mktemp("synthetic")
    texts, labels = clinc.splits["train"].texts[:3000], list(clinc.labels)
    for name, depth in (("fast", 1), ("slow", 3), ("sluggish", 24)):
        write_synthetic_variant(root / name, texts, labels, depth=depth, hidden=HIDDEN)
    (root / "experiment.yaml").write_text(
        "name: speed\narms:\n  - {variant: fast, weight: 1}\n  - {variant: slow, weight: 1}\n"
    )
    return root


@pytest.fixture(scope="module")
def utterances(clinc) -> list[str]:
    return clinc.splits["test"].texts[:400]


def serve(tmp_path: Path, repository: Path, **env: str):
    return run_server(tmp_path, {"BRUM_MODEL_REPOSITORY": str(repository), **env})


def samples(server: Server) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    text = httpx.get(server.url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(server: Server, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(server).items() if n == name and wanted <= set(ls))


def rss_bytes(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        * 1024
    )


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_answers(
    repository, utterances, tmp_path
):
    with serve(tmp_path, repository, BRUM_MAX_WAIT_MS="5") as server, server.client() as client:
        pairs = [utterances[i : i + 2] for i in range(0, 192, 2)]
        alone = [
            client.post("/v1/models/fast/predict", json={"texts": p, "top_k": 1}).json()
            for p in pairs
        ]
        before = metric(server, "brum_batch_size_count", variant="fast")

        def ask(pair: list[str]) -> dict:
            with server.client() as own:
                return own.post("/v1/models/fast/predict", json={"texts": pair, "top_k": 1}).json()

        with ThreadPoolExecutor(32) as pool:
            together = list(pool.map(ask, pairs))
        for mine, reference in zip(together, alone, strict=True):
            for got, want in zip(mine["predictions"], reference["predictions"], strict=True):
                assert (got["label"], got["tokens"]) == (want["label"], want["tokens"])
                assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        batches = metric(server, "brum_batch_size_count", variant="fast") - before
        texts = len(pairs) * 2
        assert batches < texts / 2, f"{texts} texts ran in {batches} batches: no batching"
        assert metric(server, "brum_queue_duration_seconds_count", variant="fast") >= len(pairs)


def test_garbage_collection_stays_off_the_request_path(repository, utterances, tmp_path):
    # app/heap.py: start-up objects are frozen out of the collector's sight, and the young
    # generation waits for 20,000 net allocations. With CPython's defaults (700) these 600
    # requests, each leaving a few objects behind (the feedback ledger, metric children), set
    # off about 8 young collections and the loaded heap is walked by every full one.
    with serve(tmp_path, repository) as server, server.client() as client:
        before = {g: metric(server, "python_gc_collections_total", generation=g) for g in "012"}
        assert before["0"] > 0  # the collector's metrics are exported
        for text in utterances + utterances[:200]:
            response = client.post("/v1/models/fast/predict", json={"texts": [text]})
            assert response.status_code == 200
        after = {g: metric(server, "python_gc_collections_total", generation=g) for g in "012"}
        assert after["2"] == before["2"]
        assert after["0"] - before["0"] <= 1


def test_batches_run_side_by_side_with_several_inference_workers(repository, utterances, tmp_path):
    env = {"BRUM_INTRA_OP_THREADS": "1", "BRUM_INFERENCE_WORKERS": "2", "BRUM_MAX_BATCH_SIZE": "4"}
    with serve(tmp_path, repository, **env) as server, server.client() as client:
        texts = utterances[:48]
        alone = [
            client.post("/v1/models/sluggish/predict", json={"text": t, "top_k": 1}).json()
            for t in texts
        ]
        running: list[float] = []
        with ThreadPoolExecutor(len(texts) + 1) as pool:
            futures = [
                pool.submit(
                    httpx.post,
                    server.url + "/v1/models/sluggish/predict",
                    json={"text": t, "top_k": 1},
                )
                for t in texts
            ]
            while not all(f.done() for f in futures):
                running.append(metric(server, "brum_batches_running", variant="sluggish"))
            together = [f.result().json() for f in futures]
        assert max(running) == 2
        for mine, reference in zip(together, alone, strict=True):
            got, want = mine["predictions"][0], reference["predictions"][0]
            assert (got["label"], got["tokens"]) == (want["label"], want["tokens"])
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert metric(server, "brum_batches_running", variant="sluggish") == 0


def test_overload_is_refused_at_once_with_429_and_memory_stays_flat(
    repository, utterances, tmp_path
):
    # The 24-layer variant: slow enough on any machine for 48 callers to fill a 16-text queue.
    env = {
        "BRUM_MAX_QUEUE_TEXTS": "16",
        "BRUM_MAX_BATCH_SIZE": "4",
        "BRUM_QUEUE_TIMEOUT_SECONDS": "60",
    }
    with serve(tmp_path, repository, **env) as server:
        payload = {"texts": utterances[:8]}

        def ask(_: int) -> httpx.Response:
            with server.client() as own:
                return own.post("/v1/models/sluggish/predict", json=payload)

        rounds = []
        for _ in range(3):
            with ThreadPoolExecutor(48) as pool:
                responses = list(pool.map(ask, range(96)))
            rounds.append(rss_bytes(server))
            statuses = {r.status_code for r in responses}
            assert statuses == {200, 429}, statuses
            refused = [r for r in responses if r.status_code == 429]
            assert all(r.headers["retry-after"] == "1" for r in refused)
            assert "queue is full" in refused[0].json()["error"]
            assert refused[0].headers["x-brum-variant"] == "sluggish"
            answered = [r for r in responses if r.status_code == 200]
            assert all(len(r.json()["predictions"]) == 8 for r in answered)
        assert rounds[-1] - rounds[0] < 32 << 20, f"RSS grew: {rounds}"
        assert metric(server, "brum_queue_rejections_total", variant="sluggish", reason="full") > 0
        assert metric(server, "brum_requests_total", variant="sluggish", status="429") > 0
        assert metric(server, "brum_queue_depth", variant="sluggish") == 0


def test_a_request_waiting_past_the_queue_timeout_gets_503(repository, utterances, tmp_path):
    env = {"BRUM_QUEUE_TIMEOUT_SECONDS": "0.05", "BRUM_MAX_BATCH_SIZE": "1"}
    with serve(tmp_path, repository, **env) as server:

        def ask(i: int) -> httpx.Response:
            with server.client() as own:
                texts = utterances[i * 16 : (i + 1) * 16]
                return own.post("/v1/models/sluggish/predict", json={"texts": texts})

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(ask, range(12)))
        statuses = [r.status_code for r in responses]
        assert 200 in statuses and 503 in statuses, statuses
        late = next(r for r in responses if r.status_code == 503)
        assert late.headers["retry-after"] == "1" and "in the queue" in late.json()["error"]
        assert metric(server, "brum_queue_rejections_total", reason="timeout") > 0


def test_cost_follows_compute(repository, utterances, tmp_path):
    # Price 3600 per CPU-hour: the cost counter reads in CPU seconds.
    env = {"BRUM_CPU_HOUR_PRICE": "3600", "BRUM_CURRENCY": "EUR", "BRUM_INTRA_OP_THREADS": "1"}
    with serve(tmp_path, repository, **env) as server, server.client() as client:
        for variant in ("fast", "slow"):
            for start in range(0, 400, 8):
                batch = {"texts": utterances[start : start + 8]}
                assert client.post(f"/v1/models/{variant}/predict", json=batch).status_code == 200
        cost = {
            v: metric(server, "brum_inference_cost_total", variant=v, currency="EUR")
            for v in ("fast", "slow")
        }
        cpu = {v: metric(server, "brum_inference_cpu_seconds_total", variant=v) for v in cost}
        for variant in cost:
            assert cost[variant] == pytest.approx(cpu[variant], rel=1e-6)
        # "slow" has 3 dense layers to "fast"'s 1, plus the same embedding and classifier.
        assert 2.0 < cost["slow"] / cost["fast"] < 4.0, cost


def test_shadow_scores_off_the_answer_path_and_records_agreement(repository, utterances, tmp_path):
    experiment = tmp_path / "shadow.yaml"
    experiment.write_text(
        "name: shadowed\narms: [{variant: fast, weight: 1}]\n"
        "shadow: {variant: sluggish, fraction: 1.0}\n"
    )
    with (
        serve(tmp_path, repository, BRUM_EXPERIMENT=str(experiment)) as server,
        server.client() as client,
    ):
        shadow_series = {
            dict(labels)["outcome"]
            for name, labels in samples(server)
            if name == "brum_shadow_requests_total"
            and dict(labels)["variant"] == "fast"
            and dict(labels)["shadow"] == "sluggish"
        }
        assert shadow_series == {"agree", "disagree", "shed", "error"}  # at 0, before any request
        totals = []
        for text in utterances[:12]:
            routed = client.post("/v1/predict", json={"text": text})
            direct = client.post("/v1/models/fast/predict", json={"text": text})
            assert routed.headers["x-brum-variant"] == "fast"
            assert routed.json()["predictions"] == direct.json()["predictions"]
            totals.append(float(routed.headers["x-total-time"]))
            deadline = time.monotonic() + 10
            while metric(server, "brum_shadow_requests_total") < len(totals):
                assert time.monotonic() < deadline, "the shadow never scored"
                time.sleep(0.02)
        counts = {
            outcome: metric(
                server, "brum_shadow_requests_total", outcome=outcome, shadow="sluggish"
            )
            for outcome in ("agree", "disagree", "shed", "error")
        }
        assert counts["agree"] + counts["disagree"] == 12 and counts["error"] == 0
        shadow_ms = 1000 * (
            metric(server, "brum_inference_duration_seconds_sum", variant="sluggish")
            / metric(server, "brum_inference_duration_seconds_count", variant="sluggish")
        )
        # The answer did not wait for its shadow: it took less time than the shadow's inference.
        assert statistics.median(totals) < shadow_ms, (totals, shadow_ms)


def test_feedback_counts_online_accuracy(server):
    with server.client() as client:
        first = client.post("/v1/predict", json={"texts": ["what is my checking balance", "hi"]})
        request_id, body = first.headers["x-request-id"], first.json()
        variant, predicted = body["variant"], body["predictions"][0]["label"]
        other = next(label for label in ("balance", "greeting") if label != predicted)

        def count(outcome: str) -> float:
            return metric(server, "brum_feedback_total", variant=variant, outcome=outcome)

        correct, incorrect = count("correct"), count("incorrect")
        right = client.post("/v1/feedback", json={"request_id": request_id, "label": predicted})
        assert right.status_code == 200 and right.json()["correct"] is True
        wrong = {"request_id": request_id, "label": other, "index": 1}
        assert client.post("/v1/feedback", json=wrong).json()["correct"] is (
            body["predictions"][1]["label"] == other
        )
        assert count("correct") + count("incorrect") == correct + incorrect + 2
        assert count("correct") >= correct + 1
        again = client.post("/v1/feedback", json={"request_id": request_id, "label": predicted})
        assert again.status_code == 409
        unknown = client.post("/v1/feedback", json={"request_id": "nope", "label": predicted})
        assert unknown.status_code == 404 and "request id" in unknown.json()["error"]
        bad_label = {"request_id": request_id, "label": "no-such-intent", "index": 1}
        assert client.post("/v1/feedback", json=bad_label).status_code == 422
        bad_index = {"request_id": request_id, "label": predicted, "index": 5}
        assert client.post("/v1/feedback", json=bad_index).status_code == 422


def test_two_replicas_assign_every_key_to_the_same_arm(repository, tmp_path):
    keys = [f"user-{i}" for i in range(40)]
    arms = []
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
        with serve(tmp_path / replica, repository) as server, server.client() as client:
            arms.append(
                [
                    client.post(
                        "/v1/predict", json={"text": "hi"}, headers={"X-User-ID": k}
                    ).headers["x-brum-variant"]
                    for k in keys
                ]
            )
    assert arms[0] == arms[1] and set(arms[0]) == {"fast", "slow"}


def test_admin_is_off_without_a_token_and_checks_it(repository, tmp_path):
    with serve(tmp_path, repository) as server, server.client() as client:
        off = client.get("/admin/experiment")
        assert off.status_code == 404 and "BRUM_ADMIN_TOKEN" in off.json()["error"]
    local = tmp_path / "repository"
    shutil.copytree(repository, local, ignore=shutil.ignore_patterns("sluggish"))
    (tmp_path / "admin").mkdir()
    with (
        serve(tmp_path / "admin", local, BRUM_ADMIN_TOKEN="s3cret") as server,
        server.client() as client,
    ):
        auth = {"Authorization": "Bearer s3cret"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = client.get("/admin/experiment", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"]
        current = client.get("/admin/experiment", headers=auth).json()
        assert current["name"] == "speed"

        unknown = {"name": "x", "arms": [{"variant": "missing", "weight": 1}]}
        response = client.put("/admin/experiment", json=unknown, headers=auth)
        assert response.status_code == 422 and "missing" in response.json()["error"]
        zero = {"name": "x", "arms": [{"variant": "fast", "weight": 0}]}
        assert client.put("/admin/experiment", json=zero, headers=auth).status_code == 422
        assert client.get("/admin/experiment", headers=auth).json() == current

        only_slow = {"name": "all-slow", "arms": [{"variant": "slow", "weight": 1}]}
        assert client.put("/admin/experiment", json=only_slow, headers=auth).status_code == 200
        routed = {client.post("/v1/predict", json={"text": "hi"}).headers["x-brum-variant"]}
        assert routed == {"slow"}
        weights = samples(server)
        assert weights[
            ("brum_experiment_weight", (("experiment", "all-slow"), ("variant", "slow")))
        ]

        assert client.post("/v1/models/sluggish/predict", json={"text": "hi"}).status_code == 404
        shutil.copytree(repository / "sluggish", local / "sluggish")
        rescanned = client.post("/admin/repository/rescan", headers=auth).json()
        assert rescanned["added"] == ["sluggish"] and "sluggish" in rescanned["variants"]
        assert client.post("/v1/models/sluggish/predict", json={"text": "hi"}).status_code == 200
        assert metric(server, "brum_variant_ready", variant="sluggish") == 1
    log = next((tmp_path / "admin").glob("server-*.log")).read_text()
    assert "experiment (admin)" in log and "admin call refused" in log


def test_sigterm_stops_readiness_then_drains_every_accepted_request(
    repository, utterances, tmp_path
):
    env = {
        "BRUM_DRAIN_DELAY_SECONDS": "1",
        "BRUM_MAX_BATCH_SIZE": "1",
        "BRUM_QUEUE_TIMEOUT_SECONDS": "60",
    }
    with serve(tmp_path, repository, **env) as server:

        def ask(i: int) -> int:
            with server.client() as own:
                texts = utterances[i * 16 : (i + 1) * 16]
                return own.post("/v1/models/sluggish/predict", json={"texts": texts}).status_code

        with ThreadPoolExecutor(12) as pool:
            accepted = [pool.submit(ask, i) for i in range(12)]
            deadline = time.monotonic() + 10
            while metric(server, "brum_queue_depth", variant="sluggish") < 32:
                assert time.monotonic() < deadline, "the queue never filled"
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            with server.client() as client:
                assert client.get("/readyz").status_code == 503
                assert client.get("/v2/health/ready").status_code == 503
                assert (
                    client.post("/v1/models/fast/predict", json={"text": "hi"}).status_code == 200
                )
            assert [f.result() for f in accepted] == [200] * 12
        assert server.process.wait(timeout=30) == 0
    assert "draining" in server.logs()


SIGNAL_MID_METRIC = """
import os, signal, sys, time
import uvicorn
from app.core.engine import Engine
from app.server import DrainingServer
from app.settings import Settings
engine = Engine(Settings(model_repository=sys.argv[1]))
server = DrainingServer(uvicorn.Config(app=None), engine, drain_delay=0.0)
signal.signal(signal.SIGTERM, server.handle_exit)  # as uvicorn installs it
with engine.metrics.ready._value._lock:  # the gauge the drain sets, caught mid-update
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
deadline = time.monotonic() + 10
while not server.should_exit and time.monotonic() < deadline:
    time.sleep(0.01)
print(engine.draining, server.should_exit)
"""


def test_a_signal_that_lands_inside_a_metric_update_still_drains(repository):
    """uvicorn's signal handler runs on the main thread between two bytecodes; the drain takes
    the metrics' locks, which that thread may hold. It used to wait for itself forever."""
    drained = subprocess.run(
        [sys.executable, "-c", SIGNAL_MID_METRIC, str(repository)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert drained.stdout.split() == ["True", "True"], drained.stderr


def test_text_logs_carry_the_request_id_and_variant(repository, tmp_path):
    with serve(tmp_path, repository) as server, server.client() as client:
        response = client.post("/v1/predict", json={"text": "hi"})
        request_id, variant = response.headers["x-request-id"], response.headers["x-brum-variant"]
        lines = server.logs_with(request_id).splitlines()
    (access,) = [line for line in lines if request_id in line]
    assert " brum.access POST /v1/predict 200 " in access
    assert access.endswith(f" ms request_id={request_id} variant={variant}")


def test_json_logs_carry_the_request_id_and_variant(repository, tmp_path):
    with serve(tmp_path, repository, BRUM_LOG_FORMAT="json") as server, server.client() as client:
        response = client.post("/v1/predict", json={"text": "hi"}, headers={"X-User-ID": "u1"})
        assert float(response.headers["x-total-time"]) >= float(
            response.headers["x-inference-time"]
        )
        assert float(response.headers["x-queue-time"]) >= 0
        request_id = response.headers["x-request-id"]
        logs = server.logs_with(request_id)
        records = [json.loads(line) for line in logs.splitlines() if line.strip()]
    access = [r for r in records if r.get("request_id") == request_id]
    assert access and access[0]["variant"] == response.headers["x-brum-variant"]
    assert access[0]["status"] == 200 and access[0]["path"] == "/v1/predict"
    assert {r["logger"] for r in records} >= {"brum.engine", "brum.access"}


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return sorted(
        int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()
    )


def _connections_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections on ``port`` that each process holds, from /proc."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            if local_port == port and state == "01":
                established.add(f"socket:[{inode}]")
    held = {}
    for pid in pids:
        links = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.append(str(fd.readlink()))
            except FileNotFoundError:  # closed since the folder was listed
                continue
        held[pid] = sum(link in established for link in links)
    return held


two_cores = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="two serving processes need two cores"
)


@two_cores
def test_two_processes_share_the_port_the_metrics_and_the_feedback_key(repository, tmp_path):
    with serve(tmp_path, repository, BRUM_PROCESSES="2") as server:
        children = _children(server.process.pid)
        assert len(children) == 2
        clients = [server.client() for _ in range(16)]
        try:
            answers = [
                client.post("/v1/models/fast/predict", json={"text": "what is my balance"})
                for client in clients
                for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [200] * 48
            # The kernel spread the 16 connections over both processes' sockets.
            held = _connections_by_process(int(server.url.rsplit(":", 1)[1]), children)
            assert sum(held.values()) == 16 and min(held.values()) > 0, held
            # A token from either process is judged by whichever the call reaches: one key.
            for client, answer in zip(clients * 3, answers, strict=True):
                prediction = answer.json()
                judged = client.post(
                    "/v1/feedback",
                    json={
                        "token": prediction["feedback_token"],
                        "label": prediction["predictions"][0]["label"],
                    },
                )
                assert judged.status_code == 200, judged.text
        finally:
            for client in clients:
                client.close()
        # /metrics, from either process, sums both.
        assert metric(server, "brum_requests_total", variant="fast", status="200") == 48
        assert metric(server, "brum_feedback_total", variant="fast") == 48
        assert metric(server, "brum_ready") == 1
        plans = {
            dict(labels)["pid"]
            for (name, labels) in samples(server)
            if name == "brum_inference_plan_info"
        }
        assert plans == {str(pid) for pid in children}
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    logs = server.logs()
    assert "2 serving processes" in logs
    assert "reaches the process that served it only one time in 2" in logs
    assert "BRUM_FEEDBACK_KEY without BRUM_REDIS_URL" not in logs  # a replica's warning, not theirs


LONE_VARIANT = "minilm-l3-augmented-int8"


def _helper_threads(pid: int) -> dict[int, tuple[int, ...]]:
    """The process's threads pinned elsewhere than its own cores: thread id -> cores."""
    own = os.sched_getaffinity(pid)
    helpers = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        cores = os.sched_getaffinity(int(task.name))
        if not cores & own:
            helpers[int(task.name)] = tuple(sorted(cores))
    return helpers


def _cpu_ticks(pid: int, thread: int) -> int:
    fields = Path(f"/proc/{pid}/task/{thread}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _connect_into(port: int, pid: int, children: list[int]) -> socket.socket:
    """A connection that the kernel gave to process ``pid``'s socket; the others made on the way
    are closed."""
    strays = []
    try:
        for _ in range(64):
            held = _connections_by_process(port, children)
            sock = socket.create_connection(("127.0.0.1", port))
            deadline = time.monotonic() + 5
            while (now := _connections_by_process(port, children)) == held:
                assert time.monotonic() < deadline, "the connection was never accepted"
                time.sleep(0.01)
            if now[pid] > held[pid]:
                return sock
            strays.append(sock)
        raise AssertionError(f"64 connections and none to process {pid}")
    finally:
        for stray in strays:
            stray.close()


def _lone_texts(sock: socket.socket, port: int, count: int) -> list[int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # Headers and body go in two sends: without this, the body waits for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sock = sock
    statuses = []
    for index in range(count):
        body = json.dumps({"text": f"what is my balance {index}"})
        headers = {"Content-Type": "application/json"}
        connection.request("POST", f"/v1/models/{LONE_VARIANT}/predict", body, headers)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    return statuses


def _inline_threads(server: Server, variant: str) -> dict[int, float]:
    """brum_inline_session_threads of ``variant``, by process."""
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in samples(server).items()
        if name == "brum_inline_session_threads" and dict(labels)["variant"] == variant
    }


@two_cores
def test_a_lone_text_runs_on_every_core_only_while_the_other_process_has_no_connection(
    shipped_repository, tmp_path
):
    # A real model, whose run onnxruntime spreads over its threads: the smallest shipped one.
    alone = tmp_path / "repository"
    alone.mkdir()
    (alone / LONE_VARIANT).symlink_to(shipped_repository / LONE_VARIANT, target_is_directory=True)
    with serve(tmp_path, alone, BRUM_PROCESSES="2") as server:
        port = int(server.url.rsplit(":", 1)[1])
        first, second = children = _children(server.process.pid)
        # Lone texts start on a session of every core in both, once both are ready (/readyz
        # saw one of them).
        deadline = time.monotonic() + 30
        machine = len(os.sched_getaffinity(0))
        expected = {first: machine, second: machine}
        while (inline := _inline_threads(server, LONE_VARIANT)) != expected:
            assert time.monotonic() < deadline, inline
            time.sleep(0.1)
        # Its helper threads are pinned to the other process's cores.
        helpers = {pid: _helper_threads(pid) for pid in children}
        for pid, other in ((first, second), (second, first)):
            pinned = {core for cores in helpers[pid].values() for core in cores}
            assert pinned == os.sched_getaffinity(other)
        helper = next(iter(helpers[first]))

        mine = _connect_into(port, first, children)
        # The other process has a connection open: lone texts stay on this process's core.
        theirs = _connect_into(port, second, children)
        before = _cpu_ticks(first, helper)
        assert _lone_texts(mine, port, 400) == [200] * 400
        assert _cpu_ticks(first, helper) == before
        # Alone on the machine: they run on both cores, the helper thread on the other's.
        theirs.close()
        deadline = time.monotonic() + 5
        while _connections_by_process(port, children)[second]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before = _cpu_ticks(first, helper)
        assert _lone_texts(mine, port, 400) == [200] * 400
        assert _cpu_ticks(first, helper) > before
        mine.close()


@two_cores
def test_a_serving_process_that_dies_stops_the_others(repository, tmp_path):
    with serve(tmp_path, repository, BRUM_PROCESSES="2") as server:
        first, second = _children(server.process.pid)
        os.kill(first, signal.SIGKILL)
        assert server.process.wait(timeout=30) == 128 + signal.SIGKILL
        assert not Path(f"/proc/{second}").exists()
    assert "stopping the others" in server.logs()


def test_more_processes_than_cores_are_refused(repository, tmp_path):
    cores = len(os.sched_getaffinity(0))
    env = {"BRUM_MODEL_REPOSITORY": str(repository), "BRUM_PROCESSES": str(cores + 1)}
    with run_server(tmp_path, env, wait=None) as server:
        assert server.process.wait(timeout=30) == 2
    assert "at most one process a core" in server.logs()


@pytest.mark.skipif(not limits_available(), reason="needs a writable cgroup v1 (root)")
def test_under_a_cpu_quota_the_processes_are_capped_by_it(repository):
    env = {
        **os.environ,
        "BRUM_MODEL_REPOSITORY": str(repository),
        "BRUM_PORT": str(free_port()),
        "BRUM_PROCESSES": "2",
    }
    with cpu_group(quota=0.5) as group:
        refused = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=env,
            preexec_fn=group.enter,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 2
    assert "BRUM_PROCESSES=2 but this process may use 1 core(s)" in refused.stderr
