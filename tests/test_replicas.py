"""N replicas are one service: three real brum processes behind a real nginx (round robin) with a
real redis-server, on 127.0.0.1. Feedback is counted once whichever replica gets it (a restart
in between included), an admin change reaches every replica, a variant is replaced and a
rolling restart runs under load with no failed request, and a real Prometheus sums the three.

The tests share one cluster and run in order; each leaves the experiment and repository as it
found them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from loadtests.cluster import Cluster, Load, MissingBinary, close_cluster, start_cluster
from tests.server import prometheus_binary, start_prometheus, stop
from tests.synthetic import write_synthetic_variant

TOKEN = "admin-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPERIMENT = {
    "name": "speed",
    "arms": [{"variant": "fast", "weight": 1}, {"variant": "slow", "weight": 1}],
}
SYNC_SECONDS = 0.5
PROPAGATION_LIMIT = 5.0


@pytest.fixture(scope="module")
def texts(clinc) -> list[str]:
    return clinc.splits["test"].texts[:300]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, clinc) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    repository = work / "repository"
    train, labels = clinc.splits["train"].texts[:2000], list(clinc.labels)
    for name, depth in (("fast", 1), ("slow", 2), ("spare", 1)):
        write_synthetic_variant(repository / name, train, labels, depth=depth, hidden=256)
    experiment = work / "experiment.yaml"  # a ConfigMap's mount, in Kubernetes
    experiment.write_text(yaml.safe_dump(EXPERIMENT))
    env = {
        "BRUM_MODEL_REPOSITORY": str(repository),
        "BRUM_EXPERIMENT": str(experiment),
        "BRUM_FEEDBACK_KEY": "feedback-key-shared-by-the-replicas",
        "BRUM_ADMIN_TOKEN": TOKEN,
        "BRUM_SYNC_SECONDS": str(SYNC_SECONDS),
        "BRUM_DRAIN_DELAY_SECONDS": "0.5",
        "BRUM_INLINE_MAX_MS": "0",
    }
    try:
        cluster = start_cluster(work, 3, env)
    except MissingBinary as exc:
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {exc}")
        pytest.skip(str(exc))
    cluster.work = work  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        close_cluster(cluster)


def samples(url: str, name: str) -> dict[tuple, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def summed(cluster: Cluster, name: str, key: str) -> Counter:
    total: Counter = Counter()
    for replica in cluster.replicas:
        for labels, value in samples(replica.url, name).items():
            total[dict(labels)[key] if key else ""] += value
    return total


def wait_until(check, limit: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` is true; fails past ``limit``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            pytest.fail(f"not true within {limit} s: {check.__doc__ or check}")
        time.sleep(step)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, tmp_path_factory) -> Iterator[httpx.Client]:
    binary = prometheus_binary()
    work = tmp_path_factory.mktemp("prometheus")
    targets = [r.url.removeprefix("http://") for r in cluster.replicas]
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "brum", "static_configs": [{"targets": targets}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    process, url = start_prometheus(binary, work / "prometheus.yml", work)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            wait_until(lambda: len(query(client, "up == 1")) == 3, 30, 0.2)
            yield client
    finally:
        stop(process)


def query(client: httpx.Client, promql: str) -> list[dict]:
    try:
        response = client.get("/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []
    return response.json()["data"]["result"] if response.status_code == 200 else []


def test_feedback_through_the_balancer_is_counted_once_whichever_replica_gets_it(
    cluster, texts, prometheus
):
    with cluster.client() as client:
        answers = []
        for i, text in enumerate(texts):
            response = client.post(
                "/v1/predict", json={"text": text}, headers={"X-User-ID": f"u{i}"}
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
        assert {a["variant"] for a in answers} == {"fast", "slow"}

        restarted = cluster.replicas[1]  # between the predictions and their feedback
        assert restarted.terminate() == 0
        restarted.start()
        before = summed(cluster, "brum_feedback_total", "variant")
        # What Prometheus has recorded so far, once it has scraped the restarted replica.
        wait_until(lambda: recorded(prometheus) == as_floats(summed_by_outcome(cluster)), 15, 0.25)
        recorded_before = Counter(recorded(prometheus))

        sent: Counter = Counter()
        # The truths arrive in another order than the predictions, as they are found.
        for i, answer in sorted(enumerate(answers), key=lambda pair: (pair[0] * 7919) % 300):
            predicted = answer["predictions"][0]["label"]
            label = (
                predicted if i % 3 else next(x for x in ("balance", "greeting") if x != predicted)
            )
            # Half by the signed token, half by request id alone (found in the shared store).
            feedback = (
                {"token": answer["feedback_token"], "label": label}
                if i % 2
                else {"request_id": answer["request_id"], "label": label}
            )
            judged = client.post("/v1/feedback", json=feedback)
            assert judged.status_code == 200, judged.text
            assert judged.json()["variant"] == answer["variant"]
            assert judged.json()["correct"] is (label == predicted)
            sent[answer["variant"], "correct" if label == predicted else "incorrect"] += 1

        after = summed(cluster, "brum_feedback_total", "variant")
        counted = {v: after[v] - before[v] for v in after}
        assert counted == {v: sent[v, "correct"] + sent[v, "incorrect"] for v in counted}
        assert set(counted) == {
            "fast",
            "slow",
            "spare",
        }  # spare is loaded, served none, judged none

        # A second judgment of the same text is refused on every replica.
        for answer in answers[:20]:
            label = answer["predictions"][0]["label"]
            for replica in cluster.replicas:
                for body in (
                    {"token": answer["feedback_token"], "label": label},
                    {"request_id": answer["request_id"], "label": label},
                ):
                    again = httpx.post(replica.url + "/v1/feedback", json=body, timeout=10)
                    assert again.status_code == 409, again.text
        forged = dict(token=answers[0]["feedback_token"][:-4] + "AAAA", label="balance")
        assert client.post("/v1/feedback", json=forged).status_code == 422

        # A V2 answer carries its token in a header; judged through the balancer like the rest.
        tensor = {"name": "text", "shape": [2], "datatype": "BYTES", "data": texts[:2]}
        v2 = client.post("/v2/models/fast/infer", json={"inputs": [tensor]})
        labels = next(o["data"] for o in v2.json()["outputs"] if o["name"] == "label")
        token = v2.headers["x-feedback-token"]
        judged = client.post("/v1/feedback", json={"token": token, "label": labels[1], "index": 1})
        assert judged.status_code == 200 and judged.json()["correct"] is True
        sent["fast", "correct"] += 1

    # Prometheus, summing the three replicas, records exactly the feedback sent.
    # update() keeps the outcomes at 0 that each replica exports from load; + would drop them.
    recorded_before.update(sent)
    expected = as_floats(recorded_before)
    wait_until(lambda: recorded(prometheus) == expected, 15, 0.25)


def recorded(prometheus: httpx.Client) -> dict:
    rows = query(prometheus, "sum by (variant, outcome) (brum_feedback_total)")
    return {(r["metric"]["variant"], r["metric"]["outcome"]): float(r["value"][1]) for r in rows}


def as_floats(counts: Counter) -> dict:
    return {key: float(value) for key, value in counts.items()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=12,
)


def mutated(token: str) -> st.SearchStrategy[str]:
    """A real token with characters changed, cut or added: forged or corrupted."""
    positions = st.integers(0, len(token) - 1)
    return st.one_of(
        st.tuples(positions, st.characters(codec="ascii")).map(
            lambda change: token[: change[0]] + change[1] + token[change[0] + 1 :]
        ),
        positions.map(lambda cut: token[:cut]),
        st.text(max_size=20).map(lambda extra: token + extra),
        st.text(max_size=200),
    )


@pytest.fixture(scope="module")
def issued(cluster) -> dict:
    with cluster.client() as client:
        return client.post("/v1/predict", json={"text": "what is my balance"}).json()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_random_feedback_is_refused_with_a_clear_error_and_counts_nothing(cluster, issued, data):
    token, request_id = issued["feedback_token"], issued["request_id"]
    body = data.draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"token": mutated(token), "label": st.sampled_from(["balance", "x", ""])},
                optional={"index": st.integers(-3, 3) | json_values},
            ),
            st.fixed_dictionaries(
                {"request_id": st.text(max_size=40) | st.just(request_id), "label": json_values},
                optional={"index": st.integers(-3, 70), "token": json_values},
            ),
        )
    )
    before = sum(summed_by_outcome(cluster).values())
    with cluster.client() as client:
        response = client.post("/v1/feedback", content=json.dumps(body))
    assert response.status_code in (400, 404, 409, 410, 422) or (
        response.status_code == 200 and body.get("token") in (None, token)
    ), response.text
    if response.status_code >= 400:
        assert response.json()["error"]
    else:  # only the real prediction can be judged: once
        assert sum(summed_by_outcome(cluster).values()) == before + 1


def summed_by_outcome(cluster: Cluster) -> Counter:
    total: Counter = Counter()
    for replica in cluster.replicas:
        for labels, value in samples(replica.url, "brum_feedback_total").items():
            fields = dict(labels)
            total[fields["variant"], fields["outcome"]] += value
    return total


def experiment_on(replica) -> dict | None:
    return httpx.get(replica.url + "/admin/experiment", headers=AUTH, timeout=10).json()


def infos(cluster: Cluster) -> list[dict]:
    return [dict(next(iter(samples(r.url, "brum_experiment_info")))) for r in cluster.replicas]


def test_an_experiment_change_through_any_replica_reaches_all_and_a_new_file_wins(cluster):
    all_fast = {"name": "all-fast", "arms": [{"variant": "fast", "weight": 1}]}
    with cluster.client() as client:
        started = time.monotonic()
        changed = client.put("/admin/experiment", json=all_fast, headers=AUTH)
        assert changed.status_code == 200, changed.text

        def everywhere() -> bool:
            """every replica runs the admin's experiment"""
            return all(experiment_on(r)["name"] == "all-fast" for r in cluster.replicas)

        wait_until(everywhere, PROPAGATION_LIMIT)
        print(f"admin change on every replica after {time.monotonic() - started:.2f} s")
        labels = infos(cluster)
        assert len({x["hash"] for x in labels}) == 1 and {x["source"] for x in labels} == {"admin"}
        routed = {
            client.post("/v1/predict", json={"text": "hi"}, headers={"X-User-ID": f"k{i}"}).headers[
                "x-brum-variant"
            ]
            for i in range(12)
        }
        assert routed == {"fast"}

        # A restarted replica starts on the override, not on the file.
        cluster.replicas[2].terminate()
        cluster.replicas[2].start()
        assert experiment_on(cluster.replicas[2])["name"] == "all-fast"

        # A changed file (a new ConfigMap) supersedes the override on every replica.
        file = cluster.work / "experiment.yaml"
        declared = {**EXPERIMENT, "name": "speed-2"}
        file.write_text(yaml.safe_dump(declared))
        wait_until(lambda: all(experiment_on(r)["name"] == "speed-2" for r in cluster.replicas), 5)

        # An invalid file keeps what runs, and each replica says so.
        file.write_text("name: [not, an, experiment\n")
        wait_until(
            lambda: all(
                samples(r.url, "brum_experiment_sync_errors_total").get((("reason", "invalid"),))
                for r in cluster.replicas
            ),
            5,
        )
        assert all(experiment_on(r)["name"] == "speed-2" for r in cluster.replicas)
        assert all("kept the running experiment" in r.logs() for r in cluster.replicas)

        file.write_text(yaml.safe_dump(EXPERIMENT))
        wait_until(lambda: all(experiment_on(r)["name"] == "speed" for r in cluster.replicas), 5)


def card_on(replica, name: str) -> httpx.Response:
    return httpx.get(f"{replica.url}/v1/models/{name}", timeout=10)


def test_a_variant_replaced_under_load_fails_no_request_and_a_removed_one_unloads(
    cluster, clinc, texts
):
    repository, aside = cluster.work / "repository", cluster.work / "aside"
    train, labels = clinc.splits["train"].texts[:2000], list(clinc.labels)
    write_synthetic_variant(aside / "new" / "fast", train, labels, depth=3, hidden=256, seed=7)
    with Load(cluster.balancer, "/v1/models/fast/predict", texts) as load:
        time.sleep(1)
        (repository / "fast").rename(aside / "fast")
        (aside / "new" / "fast").rename(repository / "fast")
        with cluster.client() as client:
            report = client.post("/admin/repository/rescan", headers=AUTH)
        assert report.status_code == 200, report.text
        assert report.json()["replaced"] == ["fast"]
        wait_until(
            lambda: all(
                "3 dense layers" in card_on(r, "fast").json()["description"]
                for r in cluster.replicas
            ),
            PROPAGATION_LIMIT,
        )
        time.sleep(1)
    print(f"replace under load: {dict(load.statuses)}, no answer: {len(load.failures)}")
    assert load.statuses[200] > 50 and load.not_2xx == 0 and not load.failures

    # Removed while the experiment names it: kept. Not named: unloaded everywhere.
    (repository / "slow").rename(aside / "slow")
    shutil.rmtree(repository / "spare")
    with cluster.client() as client:
        report = client.post("/admin/repository/rescan", headers=AUTH).json()
        assert report["removed"] == ["spare"] and "slow" in report["kept"]
        wait_until(lambda: all(card_on(r, "spare").status_code == 404 for r in cluster.replicas), 5)
        assert all(card_on(r, "slow").status_code == 200 for r in cluster.replicas)
        refused = client.put(
            "/admin/experiment",
            json={"name": "x", "arms": [{"variant": "spare", "weight": 1}]},
            headers=AUTH,
        )
        assert refused.status_code == 422 and "spare" in refused.json()["error"]
    (aside / "slow").rename(repository / "slow")  # restarted replicas need it: the experiment


def test_a_rolling_restart_under_load_loses_no_request(cluster, texts):
    with Load(cluster.balancer, "/v1/predict", texts) as load:
        time.sleep(1)
        for replica in cluster.replicas:
            assert replica.terminate() == 0
            replica.start()
        time.sleep(1)
    print(f"rolling restart under load: {dict(load.statuses)}, no answer: {len(load.failures)}")
    assert load.statuses[200] > 100 and load.not_2xx == 0 and not load.failures


def test_with_the_shared_store_down_predictions_still_answer_and_the_rest_says_503(
    tmp_path, shipped_repository
):
    """The prediction path never waits for the store; feedback and admin changes need it and say
    so with a 503 and Retry-After; the sync keeps the running experiment and counts why."""
    from tests.server import free_port, run_server

    env = {
        "BRUM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "BRUM_FEEDBACK_KEY": "k",
        "BRUM_ADMIN_TOKEN": TOKEN,
        "BRUM_SYNC_SECONDS": "0.2",
    }
    with run_server(tmp_path, env) as server, server.client() as client:
        answers = [client.post("/v1/predict", json={"text": f"hello {i}"}) for i in range(20)]
        assert all(a.status_code == 200 and a.json()["feedback_token"] for a in answers)
        answer = answers[0].json()
        label = answer["predictions"][0]["label"]
        for body in (
            {"token": answer["feedback_token"], "label": label},
            {"request_id": answer["request_id"], "label": label},
        ):
            refused = client.post("/v1/feedback", json=body)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "shared feedback store is unavailable" in refused.json()["error"]
        experiment = client.get("/admin/experiment", headers=AUTH).json()
        put = client.put("/admin/experiment", json=experiment, headers=AUTH)
        assert put.status_code == 503 and "unavailable" in put.json()["error"]
        errors = samples(server.url, "brum_experiment_sync_errors_total")
        assert errors[(("reason", "store"),)] >= 1
        assert client.get("/readyz").status_code == 200
