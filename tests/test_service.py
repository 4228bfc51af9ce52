"""Integration tests: the real service in a uvicorn subprocess on 127.0.0.1, shipped variant."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.core.card import OosThreshold, read_card, write_card
from app.core.prediction import predictions_from_ranking, rank
from app.core.registry import load_variant
from app.runtime.batching import BatchCost, plan_batches
from app.runtime.session import SessionConfig
from app.settings import SHIPPED_REPOSITORY, Settings
from tests.server import run_server, wait_for

VARIANTS = sorted(p.parent.name for p in SHIPPED_REPOSITORY.glob("*/variant.json"))
DEFAULT = VARIANTS[0]
# Where the answering variant matters, name it: /v1/predict may route through an experiment.
PREDICT = f"/v1/models/{DEFAULT}/predict"
EXPERIMENT = yaml.safe_load((SHIPPED_REPOSITORY / "experiment.yaml").read_text())


def scrape(server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(server.url + "/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def served_batches(samples, lengths: list[int]) -> list[list[int]]:
    """How the service cuts one request's texts: by the batch limit and run cost it exports."""
    limit = int(value(samples, "brum_batch_size_limit"))
    cost = BatchCost(
        value(samples, "brum_batch_cost_seconds", part="overhead"),
        value(samples, "brum_batch_cost_seconds", part="token"),
    )
    return plan_batches(lengths, limit, Settings().max_batch_tokens, cost)


def test_liveness_and_readiness(server):
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "variants": {}}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "variants": dict.fromkeys(VARIANTS, True)}


def test_predictions_on_clinc150_test_utterances_match_the_labels_and_the_runtime(server, clinc):
    test = clinc.splits["test"]
    seen, texts, truth = set(), [], []
    for text, label in zip(test.texts, test.label_ids, strict=True):
        if label not in seen:
            seen.add(label)
            texts.append(text)
            truth.append(clinc.labels[label])
        if len(texts) == 16:
            break
    with server.client() as client:
        response = client.post(PREDICT, json={"texts": texts, "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    labels = [p["label"] for p in body["predictions"]]
    assert sum(a == b for a, b in zip(labels, truth, strict=True)) >= 14
    # Over HTTP, the answers are those of the runtime in-process, batched as the service batched
    # them (dynamic int8 scales each batch on its own: the cut changes the scores a little).
    folder = SHIPPED_REPOSITORY / DEFAULT
    variant = load_variant(folder, read_card(folder), SessionConfig(intra_op_threads=1))
    lengths = [len(e.ids) for e in variant.classifier.tokenize(texts)]
    logits = np.zeros((len(texts), len(variant.card.labels)), dtype=np.float32)
    for batch in served_batches(scrape(server), lengths):
        logits[batch] = variant.classifier.classify([texts[i] for i in batch]).logits
    local = predictions_from_ranking(
        variant.card, rank(logits, 3), lengths, [False] * len(texts), 3
    )
    assert labels == [p.label for p in local]
    for remote, mine in zip(body["predictions"], local, strict=True):
        assert remote["score"] == pytest.approx(mine.score, abs=1e-4)
        assert [t["label"] for t in remote["top_k"]] == [t.label for t in mine.top_k]


def test_response_shape_single_text(server):
    with server.client() as client:
        response = client.post(PREDICT, json={"text": "what's the weather like tomorrow"})
    assert response.status_code == 200
    body = response.json()
    assert body["variant"] == DEFAULT == response.headers["x-brum-variant"]
    with server.client() as client:
        routed = client.post("/v1/predict", json={"text": "what's the weather like tomorrow"})
    assert routed.json()["variant"] in VARIANTS
    assert body["request_id"] == response.headers["x-request-id"]
    [prediction] = body["predictions"]
    assert prediction["label"] == "weather"
    scores = [t["score"] for t in prediction["top_k"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert prediction["score"] == scores[0] and 0 < sum(scores) <= 1.0001
    assert prediction["truncated"] is False and prediction["tokens"] > 3


def test_explicit_variant_and_cards(server):
    with server.client() as client:
        response = client.post(
            f"/v1/models/{DEFAULT}/predict", json={"text": "book a flight to paris"}
        )
        assert response.status_code == 200
        assert response.json()["variant"] == DEFAULT
        listing = client.get("/v1/models").json()
        assert listing["default"] in VARIANTS and listing["ready"] is True
        assert [m["name"] for m in listing["models"]] == VARIANTS
        card = client.get(f"/v1/models/{DEFAULT}").json()
        assert card == read_card(SHIPPED_REPOSITORY / DEFAULT).model_dump(mode="json")
        assert card["metrics"]["accuracy"] >= 0.867
        missing = client.get("/v1/models/nope")
        assert missing.status_code == 404 and "available" in missing.json()["error"]


def test_request_id_is_honoured_or_generated(server):
    with server.client() as client:
        given = client.post("/v1/predict", json={"text": "hi"}, headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123" == given.json()["request_id"]
        unsafe = client.post("/v1/predict", json={"text": "hi"}, headers={"X-Request-ID": "a b\tc"})
        assert (
            unsafe.headers["x-request-id"] != "a b\tc" and len(unsafe.headers["x-request-id"]) == 32
        )
        errors = client.post("/v1/predict", json={}, headers={"X-Request-ID": "err-1"})
        assert errors.headers["x-request-id"] == "err-1"


def test_counters_a_rollout_reads_exist_at_zero_before_their_first_event(server):
    # increase() takes a series' first sample as its baseline: one born at its first event
    # loses that event on every replica.
    samples = scrape(server)
    expected = [
        *[("brum_feedback_total", {"outcome": o}) for o in ("correct", "incorrect")],
        *[("brum_requests_total", {"status": s}) for s in ("200", "429", "500", "503")],
        *[("brum_queue_rejections_total", {"reason": r}) for r in ("full", "timeout")],
    ]
    missing = [
        (name, variant, labels)
        for variant in VARIANTS
        for name, labels in expected
        if (name, tuple(sorted({"variant": variant, **labels}.items()))) not in samples
    ]
    assert missing == []


def test_a_lone_request_is_in_the_metrics_by_the_time_the_next_request_is_read(server):
    # A lone text runs inline and its metrics are recorded after its reply is sent: they must
    # still be there for whatever the connection asks next.
    assert value(scrape(server), "brum_inline_session_threads", variant=DEFAULT) >= 1
    counted = (
        "brum_texts_total",
        "brum_inference_duration_seconds_count",
        "brum_queue_duration_seconds_count",
        "brum_prediction_confidence_count",
    )
    with server.client() as client:

        def read() -> dict[str, float]:
            samples = {}
            for family in text_string_to_metric_families(client.get("/metrics").text):
                for sample in family.samples:
                    if sample.name in counted and sample.labels.get("variant") == DEFAULT:
                        samples[sample.name] = sample.value
            return samples

        before = read()
        for served in range(1, 6):
            assert client.post(PREDICT, json={"text": "wake me up at seven"}).status_code == 200
            after = read()
            assert after == {name: before[name] + served for name in counted}


def test_metrics_move_as_requests_are_served(server):
    before = scrape(server)
    texts = ["set a timer", "play music"]
    with server.client() as client:
        assert client.post(PREDICT, json={"texts": texts}).status_code == 200
        assert client.post(PREDICT, json={"text": ""}).status_code == 422
        raw = client.get("/metrics", follow_redirects=False)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain")
    after = scrape(server)
    ok = {"variant": DEFAULT, "status": "200"}
    assert (
        value(after, "brum_requests_total", **ok) == value(before, "brum_requests_total", **ok) + 1
    )
    bad = {"variant": DEFAULT, "status": "422"}
    assert (
        value(after, "brum_requests_total", **bad)
        == value(before, "brum_requests_total", **bad) + 1
    )
    folder = SHIPPED_REPOSITORY / DEFAULT
    tokenized = load_variant(folder, read_card(folder), SessionConfig()).classifier.tokenize(texts)
    runs = len(served_batches(before, [len(e.ids) for e in tokenized]))
    for name, delta in [("brum_texts_total", 2), ("brum_inference_duration_seconds_count", runs)]:
        assert value(after, name, variant=DEFAULT) == value(before, name, variant=DEFAULT) + delta
    assert (
        value(after, "brum_tokens_total", variant=DEFAULT)
        >= value(before, "brum_tokens_total", variant=DEFAULT) + 6
    )
    assert value(after, "brum_request_duration_seconds_count", variant=DEFAULT) >= 2 + value(
        before, "brum_request_duration_seconds_count", variant=DEFAULT
    )
    assert value(after, "brum_ready") == 1
    assert (
        value(after, "brum_model_size_bytes", variant=DEFAULT)
        == (SHIPPED_REPOSITORY / DEFAULT / "model.onnx").stat().st_size
    )
    card = read_card(SHIPPED_REPOSITORY / DEFAULT)
    assert (
        value(
            after,
            "brum_model_info",
            variant=DEFAULT,
            base=card.base.reference,
            quantization="int8",
            task="text-classification",
        )
        == 1
    )
    assert value(after, "brum_model_parameters", variant=DEFAULT) == card.metrics.parameters


def test_text_longer_than_the_model_maximum_is_truncated_and_flagged(server):
    card = read_card(SHIPPED_REPOSITORY / DEFAULT)
    with server.client() as client:
        response = client.post(PREDICT, json={"texts": ["please " * 2000, "hello"]})
    assert response.status_code == 200
    long, short = response.json()["predictions"]
    assert long["truncated"] is True and long["tokens"] == card.max_length
    assert short["truncated"] is False


BAD_REQUESTS = [
    pytest.param({"json": {"text": ""}}, 422, "body.text", id="empty"),
    pytest.param({"json": {"text": " \n\t "}}, 422, "whitespace", id="whitespace"),
    pytest.param({"json": {"text": 42}}, 422, "valid string", id="non-string"),
    pytest.param({"json": {"texts": ["ok", None]}}, 422, "body.texts.1", id="non-string-in-list"),
    pytest.param({"json": {}}, 422, "exactly one of 'text'", id="missing-field"),
    pytest.param({"json": {"text": "a", "texts": ["b"]}}, 422, "exactly one", id="both-fields"),
    pytest.param({"json": {"texts": []}}, 422, "body.texts", id="empty-list"),
    pytest.param({"json": {"text": "a", "top_k": 0}}, 422, "body.top_k", id="top-k-zero"),
    pytest.param({"json": ["text"]}, 422, "body", id="array-body"),
    pytest.param({"content": b'{"text": "unterminated'}, 400, "not valid JSON", id="invalid-json"),
    pytest.param({"content": b"\xff\xfe\x00"}, 400, "not valid JSON", id="not-utf8"),
    pytest.param(
        {
            "content": b'{"text": "hi"}',
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        415,
        "Content-Type: application/json",
        id="form-content-type",
    ),
    pytest.param(
        {"json": {"texts": ["a"] * 17}},
        413,
        "17 texts in one request; the limit is 16",
        id="too-many-texts",
    ),
    pytest.param(
        {"content": b'{"text": "' + b"a" * (1 << 20) + b'"}'},
        413,
        "larger than the limit",
        id="oversized-body",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "status", "message"), BAD_REQUESTS)
def test_bad_input_gets_a_clear_json_error(server, request_kwargs, status, message):
    with server.client() as client:
        response = client.post("/v1/predict", **request_kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert message in json.dumps(body)
        assert set(body) <= {"error", "detail"} and isinstance(body["error"], str)
        # and the server keeps serving
        assert client.post("/v1/predict", json={"text": "what time is it"}).status_code == 200


def test_oversized_chunked_body_without_content_length_is_refused(server):
    def chunks():
        for _ in range(64):
            yield b"x" * (32 * 1024)

    with server.client() as client:
        response = client.post("/v1/predict", content=chunks())
        assert response.status_code == 413
        assert client.get("/healthz").status_code == 200


def test_unknown_variant_is_404(server):
    with server.client() as client:
        response = client.post("/v1/models/no-such-variant/predict", json={"text": "hi"})
    assert response.status_code == 404
    names = ", ".join([*VARIANTS, EXPERIMENT["name"]])
    assert response.json() == {"error": f"unknown model 'no-such-variant'; available: {names}"}


def test_v1_routes_the_experiment_name_as_v2_does(server):
    name, header = EXPERIMENT["name"], EXPERIMENT.get("sticky_header", "X-User-ID")
    arms = {arm["variant"] for arm in EXPERIMENT["arms"]}
    served = set()
    with server.client() as client:
        for user in range(12):
            answers = [
                client.post(
                    f"/v1/models/{name}/predict", json={"text": "hi"}, headers={header: f"u{user}"}
                )
                for _ in range(2)
            ]
            assert all(a.headers["x-brum-experiment"] == name for a in answers)
            variants = {a.headers["x-brum-variant"] for a in answers}
            assert len(variants) == 1, "the same caller lands on the same arm"
            served |= variants
    assert served <= arms and len(served) > 1


def test_bad_requests_do_not_disturb_concurrent_good_ones(server, clinc):
    texts = clinc.splits["test"].texts[:64]
    with server.client() as client:
        expected = [
            client.post(PREDICT, json={"text": t}).json()["predictions"][0]["label"] for t in texts
        ]

        def good(i: int) -> str:
            return client.post(PREDICT, json={"text": texts[i]}).json()["predictions"][0]["label"]

        def bad(i: int) -> int:
            payload = [
                b"{",
                b'{"text": 1}',
                b'{"texts": []}',
                b'{"text": "' + b"z" * (2 << 20) + b'"}',
            ]
            return client.post("/v1/predict", content=payload[i % 4]).status_code

        with ThreadPoolExecutor(8) as pool:
            goods = [pool.submit(good, i) for i in range(64)]
            bads = [pool.submit(bad, i) for i in range(64)]
            answers = [f.result() for f in goods]
            # Batched with strangers, a dynamic-int8 text's scores move a little (activation
            # scales are per batch; see README "Batching"): a label may flip at a tie, no more.
            assert sum(a == b for a, b in zip(answers, expected, strict=True)) >= 62
            assert all(f.result() in {400, 413, 422} for f in bads)


def test_readiness_flips_only_after_warm_up(tmp_path):
    with run_server(tmp_path, {"BRUM_WARMUP_ITERATIONS": "200"}, wait="/healthz") as server:
        with server.client() as client:
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503 and not_ready.json()["status"] == "loading"
            refused = client.post("/v1/predict", json={"text": "hello"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert value(scrape(server), "brum_ready") == 0
        wait_ready(server)
        logs = server.logs()
        assert logs.index("warmed up") < logs.index("ready in")
        assert value(scrape(server), "brum_ready") == 1
        with server.client() as client:
            assert client.post("/v1/predict", json={"text": "hello"}).status_code == 200


def wait_ready(server) -> None:
    wait_for(server.url, "/readyz", time.monotonic() + 180, server.process)


def test_a_broken_repository_stops_start_up_with_its_reason(tmp_path):
    (tmp_path / "repo").mkdir()
    with (
        pytest.raises(RuntimeError, match="server exited with 2"),
        run_server(tmp_path, {"BRUM_MODEL_REPOSITORY": str(tmp_path / "repo")}, wait="/healthz"),
    ):
        pass
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert "holds no variant (no */variant.json)" in log
    assert "Traceback" not in log


def test_the_cards_oos_threshold_is_applied(tmp_path):
    repository = tmp_path / "repository"
    shutil.copytree(SHIPPED_REPOSITORY / DEFAULT, repository / DEFAULT)
    card = read_card(repository / DEFAULT)
    oos = OosThreshold(label="oos", threshold=1.0, objective="balanced", split="validation")
    write_card(repository / DEFAULT, card.model_copy(update={"oos_threshold": oos}))
    env = {"BRUM_MODEL_REPOSITORY": str(repository)}
    with run_server(tmp_path, env) as server, server.client() as client:
        body = client.post("/v1/predict", json={"text": "what is the weather like"}).json()
    [prediction] = body["predictions"]
    assert prediction["label"] == "oos" and prediction["low_confidence"] is True
    assert prediction["top_k"][0]["label"] == "weather"
