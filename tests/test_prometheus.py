"""A real Prometheus on loopback scrapes a real brum server every second with brum's rules loaded:
recorded series come back through the HTTP API, every rule evaluates cleanly, and every dashboard
query runs. Skipped without a prometheus binary, except in CI (CI is set there), where it must run.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.server import Server, prometheus_binary, run_server, start_prometheus, stop
from tests.test_deploy import RULES, dashboard_queries

TEXTS = ["what is my balance", "set an alarm for 7 am", "book a flight to paris", "tell me a joke"]


@pytest.fixture(scope="module")
def brum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("brum")) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(brum: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    binary = prometheus_binary()
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "brum",
                "static_configs": [{"targets": [brum.url.removeprefix("http://")]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    process, url = start_prometheus(binary, work / "prometheus.yml", work)
    client = httpx.Client(base_url=url, timeout=10)
    try:
        eventually(lambda: client.get("/-/ready").status_code == 200, "Prometheus ready", process)
        yield client
    finally:
        client.close()
        stop(process)


def eventually(check, what: str, process: subprocess.Popen | None = None, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} while waiting for {what}")
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"{what}: not within {timeout} s")


def query(prometheus: httpx.Client, promql: str) -> list[dict]:
    body = prometheus.get("/api/v1/query", params={"query": promql}).json()
    assert body["status"] == "success", f"{promql}: {body}"
    return body["data"]["result"]


def send_traffic(brum: Server, variants: list[str]) -> None:
    with brum.client() as client:
        for i, variant in enumerate(variants):
            response = client.post(f"/v1/models/{variant}/predict", json={"texts": TEXTS})
            assert response.status_code == 200, response.text
            response = client.post(
                "/v1/predict", json={"text": TEXTS[i % len(TEXTS)]}, headers={"X-User-ID": f"u{i}"}
            )
            assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def variants(brum: Server) -> list[str]:
    return sorted(httpx.get(f"{brum.url}/readyz").json()["variants"])


@pytest.fixture(scope="module")
def recorded_rate(brum: Server, prometheus: httpx.Client, variants: list[str]) -> dict[str, float]:
    """variant:brum_requests:rate5m per variant, once positive for all: traffic keeps flowing
    between scrapes until then (a rate needs two scrapes that differ)."""

    def positive() -> dict[str, float] | None:
        send_traffic(brum, variants)
        result = query(prometheus, "variant:brum_requests:rate5m")
        rates = {s["metric"]["variant"]: float(s["value"][1]) for s in result}
        return rates if all(rates.get(v, 0) > 0 for v in variants) else None

    return eventually(positive, "a positive recorded request rate for every variant")


def test_recorded_request_rate_per_variant(recorded_rate, variants):
    assert set(variants) <= set(recorded_rate)
    assert all(recorded_rate[v] > 0 for v in variants)


def test_recorded_latency_quantiles_per_variant(recorded_rate, prometheus, variants):
    for quantile in ("p50", "p95", "p99"):
        rule = f"variant:brum_request_duration_seconds:{quantile}_rate5m"

        def every_variant(rule: str = rule) -> dict[str, float] | None:
            # The counter and the histogram are observed one after the other, so a scrape can
            # fall between them: a positive request rate may still see an empty histogram rate.
            result = query(prometheus, rule)
            latency = {s["metric"]["variant"]: float(s["value"][1]) for s in result}
            return latency if all(latency.get(v, 0) > 0 for v in variants) else None

        latency = eventually(every_variant, f"{rule} for every variant", timeout=30)
        for variant in variants:
            # Within the histogram's buckets (0.5 ms to 2.5 s), not NaN.
            assert 0 < latency[variant] <= 2.5, (quantile, variant, latency)


def test_every_rule_evaluates_without_error(recorded_rate, prometheus):
    def evaluated() -> list[dict] | None:
        groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = eventually(evaluated, "every rule evaluated once")
    assert {g["name"] for g in prometheus.get("/api/v1/rules").json()["data"]["groups"]} == {
        "brum-variant",
        "brum-alerts",
    }
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken


def test_a_healthy_server_raises_no_alert(recorded_rate, prometheus):
    # Not even pending: every variant is ready, nothing fails, queues are empty. (Latency is left
    # out: a loaded 2-core CI machine may be slow, which is what that alert is for.)
    alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    names = {a["labels"]["alertname"] for a in alerts}
    assert not names & {"BrumVariantNotReady", "BrumHighErrorRatio", "BrumQueueSaturation"}


def test_every_dashboard_query_runs(recorded_rate, prometheus):
    for name, expr in dashboard_queries():
        body = prometheus.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", (name, expr, body)


def test_variant_cards_come_from_the_service_gauges(recorded_rate, prometheus, variants):
    for gauge in ("brum_model_size_bytes", "brum_model_parameters", "brum_model_offline_accuracy"):
        result = query(prometheus, f"max by (variant) ({gauge})")
        values = {s["metric"]["variant"]: float(s["value"][1]) for s in result}
        assert set(values) == set(variants) and all(v > 0 for v in values.values()), gauge


def declared(exposition: str) -> set[str]:
    """Every declared family counts, even one with no sample yet (no feedback sent, say)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (brum_\w+) (\w+)", exposition, re.M):
        suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
        names |= {name + suffix for suffix in suffixes}
    return names


def test_rules_and_dashboard_use_metrics_the_service_exports(brum, recorded_rate):
    # The service's, and the rollout controller's (app/rollout/__main__.py, its own process).
    from prometheus_client import REGISTRY, generate_latest

    import app.rollout.__main__  # noqa: F401  (declares the controller's metrics)

    exported = declared(httpx.get(f"{brum.url}/metrics").text)
    controller = declared(generate_latest(REGISTRY).decode())
    assert controller == {"brum_rollout_step", "brum_rollout_decisions_total"}
    exported |= controller
    sources = RULES.read_text() + " ".join(expr for _, expr in dashboard_queries())
    # Metric names, not the recorded series' names (level:metric:operations) around them.
    used = set(re.findall(r"(?<![:\w])(brum_[a-z0-9_]+)", sources))
    assert used <= exported, used - exported


def test_metrics_are_scraped_per_variant(recorded_rate, prometheus, variants):
    result = query(prometheus, 'sum by (variant) (brum_texts_total{job="brum"})')
    texts = {s["metric"]["variant"]: float(s["value"][1]) for s in result}
    assert all(texts[v] >= len(TEXTS) for v in variants)


def test_prometheus_scrapes_the_real_server(prometheus, brum):
    targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert [t["scrapeUrl"] for t in targets] == [f"{brum.url}/metrics"]
    eventually(
        lambda: (
            prometheus.get("/api/v1/targets").json()["data"]["activeTargets"][0]["health"] == "up"
        ),
        "target up",
    )
