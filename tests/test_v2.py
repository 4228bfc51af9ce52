"""The Open Inference Protocol (KServe V2) REST API, against the real service and a real client."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from unittest import mock

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient.utils import InferenceServerException

from app import __version__
from app.core.card import read_card
from app.core.prediction import softmax
from app.settings import SHIPPED_REPOSITORY
from tests.server import run_server, wait_for

VARIANTS = sorted(p.parent.name for p in SHIPPED_REPOSITORY.glob("*/variant.json"))
VARIANT = VARIANTS[0]
EXPERIMENT = yaml.safe_load((SHIPPED_REPOSITORY / "experiment.yaml").read_text())
ARMS = {arm["variant"] for arm in EXPERIMENT["arms"]}
LABELS = read_card(SHIPPED_REPOSITORY / VARIANT).labels
TEXTS = ["how much money is in my checking account", "book a table for two at an italian place"]


def infer_body(texts: list[str], **extra) -> dict:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return {"inputs": [tensor], **extra}


def outputs_of(body: dict) -> dict[str, dict]:
    return {output["name"]: output for output in body["outputs"]}


@pytest.fixture()
def triton_client(server):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def test_server_metadata_and_health(server):
    with server.client() as client:
        assert client.get("/v2").json() == {
            "name": "brum",
            "version": __version__,
            "extensions": [],
        }
        assert client.get("/v2/health/live").json() == {"live": True}
        ready = client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize("name", [VARIANT, EXPERIMENT["name"]])
def test_model_metadata_and_readiness(server, name):
    expected = {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "logits", "datatype": "FP32", "shape": [-1, len(LABELS)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
    }
    with server.client() as client:
        assert client.get(f"/v2/models/{name}").json() == expected
        assert client.get(f"/v2/models/{name}/versions/1").json() == expected
        for path in (f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/1/ready"):
            ready = client.get(path)
            assert (ready.status_code, ready.json()) == (200, {"name": name, "ready": True})


def test_the_triton_client_checks_health_and_reads_metadata(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.get_server_metadata()["name"] == "brum"
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(VARIANT)
    assert triton_client.is_model_ready(VARIANT, "1")
    assert triton_client.is_model_ready(EXPERIMENT["name"])
    assert not triton_client.is_model_ready("no-such-model")
    assert not triton_client.is_model_ready(VARIANT, "2")
    metadata = triton_client.get_model_metadata(VARIANT)
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["outputs"][0]["shape"] == [-1, len(LABELS)]
    with pytest.raises(InferenceServerException, match="unknown model 'no-such-model'"):
        triton_client.get_model_metadata("no-such-model")


@pytest.mark.parametrize("shape", [[2], [2, 1]])
def test_the_triton_client_infers_with_json_tensors(server, triton_client, shape):
    text = triton.InferInput("text", shape, "BYTES")
    text.set_data_from_numpy(np.array(TEXTS, dtype=object).reshape(shape), binary_data=False)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("logits", "label")]
    result = triton_client.infer(VARIANT, [text], outputs=outputs, request_id="triton-1")
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == (VARIANT, "1")
    assert response["id"] == "triton-1"
    assert [o["name"] for o in response["outputs"]] == ["logits", "label"]
    logits = result.as_numpy("logits")
    assert logits.dtype == np.float32 and logits.shape == (2, len(LABELS))
    labels = list(result.as_numpy("label"))
    assert labels == ["balance", "restaurant_reservation"]
    assert [LABELS[i] for i in logits.argmax(axis=1)] == labels
    assert result.as_numpy("score") is None


def test_the_triton_client_gets_a_clear_error_for_binary_tensors(triton_client):
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(TEXTS[:1], dtype=object), binary_data=True)
    requested = [triton.InferRequestedOutput("label", binary_data=False)]
    with pytest.raises(InferenceServerException, match="binary tensor data extension"):
        triton_client.infer(VARIANT, [text], outputs=requested)
    # Without requested outputs the client asks for binary outputs: refused just as clearly.
    text.set_data_from_numpy(np.array(TEXTS[:1], dtype=object), binary_data=False)
    with pytest.raises(InferenceServerException, match="'binary_data_output'"):
        triton_client.infer(VARIANT, [text])


@pytest.fixture(scope="module")
def kserve():
    """The kserve package, imported only when its tests run, never while collecting the suite.

    Importing it takes about a second (pandas, grpc, kubernetes), and its model_server module
    parses sys.argv at import time, so it is shown the program name instead of pytest's arguments.
    """
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        import kserve
    return kserve


def with_kserve_client(kserve, scenario):
    """Run an async scenario against kserve's V2 REST client; return what it returns."""

    async def main():
        config = kserve.RESTConfig(protocol="v2", timeout=30)
        async with kserve.InferenceRESTClient(config) as client:
            return await scenario(client)

    return asyncio.run(main())


def text_input(kserve, texts: list[str], shape: list[int], binary_data: bool = False):
    tensor = kserve.InferInput("text", shape, "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object).reshape(shape), binary_data)
    return tensor


def test_the_kserve_client_checks_health(server, kserve):
    async def scenario(client):
        return {
            "live": await client.is_server_live(server.url),
            "ready": await client.is_server_ready(server.url),
            VARIANT: await client.is_model_ready(server.url, VARIANT),
            EXPERIMENT["name"]: await client.is_model_ready(server.url, EXPERIMENT["name"]),
            "no-such-model": await client.is_model_ready(server.url, "no-such-model"),
        }

    assert with_kserve_client(kserve, scenario) == {
        "live": True,
        "ready": True,
        VARIANT: True,
        EXPERIMENT["name"]: True,
        "no-such-model": False,
    }


def test_the_metadata_matches_the_kserve_v2_data_models(server, kserve):
    # The REST client has no metadata call, so check the bodies against kserve's own V2 models:
    # each parses and dumps back to the very same JSON, so no field is missing, extra or mistyped.
    models = kserve.protocol.rest.v2_datamodels
    with server.client() as client:
        bodies = [
            (models.ServerMetadataResponse, client.get("/v2").json()),
            (models.ServerLiveResponse, client.get("/v2/health/live").json()),
            (models.ServerReadyResponse, client.get("/v2/health/ready").json()),
            (models.ModelMetadataResponse, client.get(f"/v2/models/{VARIANT}").json()),
            (models.ModelReadyResponse, client.get(f"/v2/models/{VARIANT}/ready").json()),
            (
                models.InferenceResponse,
                client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(TEXTS)).json(),
            ),
        ]
    for model, body in bodies:
        assert model.model_validate(body).model_dump(exclude_none=True) == body


@pytest.mark.parametrize("shape", [[2], [2, 1]])
def test_the_kserve_client_infers_what_v1_predicts(server, kserve, shape):
    request = kserve.InferRequest(
        model_name=VARIANT, infer_inputs=[text_input(kserve, TEXTS, shape)], request_id="kserve-1"
    )
    headers: dict[str, str] = {}

    async def scenario(client):
        return await client.infer(server.url, request, model_name=VARIANT, response_headers=headers)

    result = with_kserve_client(kserve, scenario)
    with server.client() as client:
        v1 = client.post(
            f"/v1/models/{VARIANT}/predict", json={"texts": TEXTS, "top_k": len(LABELS)}
        )
    assert v1.status_code == 200
    predictions = v1.json()["predictions"]
    assert (result.model_name, result.id) == (VARIANT, "kserve-1")
    assert headers["x-brum-variant"] == VARIANT
    assert [output.name for output in result.outputs] == ["logits", "label", "score"]
    labels = result.get_output_by_name("label").as_numpy()
    assert list(labels) == [p["label"] for p in predictions]
    assert list(labels) == ["balance", "restaurant_reservation"]
    scores = result.get_output_by_name("score").as_numpy()
    assert scores == pytest.approx([p["score"] for p in predictions], abs=1e-6)
    logits = result.get_output_by_name("logits").as_numpy()
    assert logits.dtype == np.float32 and logits.shape == (2, len(LABELS))
    # The logits carry every label's probability that v1 ranks in its full top_k.
    probabilities = softmax(logits)
    for row, prediction in zip(probabilities, predictions, strict=True):
        v1_probabilities = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        assert v1_probabilities == pytest.approx(dict(zip(LABELS, row, strict=True)), abs=1e-5)


def test_the_kserve_client_can_ask_for_some_outputs(server, kserve):
    requested = [kserve.protocol.infer_type.RequestedOutput(name) for name in ("score", "label")]
    request = kserve.InferRequest(
        model_name=VARIANT,
        infer_inputs=[text_input(kserve, TEXTS[:1], [1])],
        request_outputs=requested,
    )

    async def scenario(client):
        return await client.infer(server.url, request, model_name=VARIANT)

    result = with_kserve_client(kserve, scenario)
    assert [output.name for output in result.outputs] == ["score", "label"]
    assert list(result.get_output_by_name("label").as_numpy()) == ["balance"]


@pytest.mark.parametrize(
    ("binary_input", "parameters", "output_parameters", "message"),
    [
        (True, None, None, "without the Inference-Header-Content-Length header"),
        (False, {"binary_data_output": True}, None, "set parameter 'binary_data_output' to false"),
        (False, None, {"binary_data": True}, "set parameter 'binary_data' to false"),
    ],
    ids=["binary-input", "binary-outputs", "binary-output"],
)
def test_the_kserve_client_surfaces_the_clear_400_for_binary_data(
    server, kserve, binary_input, parameters, output_parameters, message
):
    requested = None
    if output_parameters is not None:
        requested = [kserve.protocol.infer_type.RequestedOutput("label", output_parameters)]
    request = kserve.InferRequest(
        model_name=VARIANT,
        infer_inputs=[text_input(kserve, TEXTS[:1], [1], binary_data=binary_input)],
        parameters=parameters,
        request_outputs=requested,
    )

    async def scenario(client):
        return await client.infer(server.url, request, model_name=VARIANT)

    with pytest.raises(httpx.HTTPStatusError) as refused:
        with_kserve_client(kserve, scenario)
    assert refused.value.response.status_code == 400
    assert "the binary tensor data extension is not supported" in str(refused.value)
    assert message in str(refused.value)
    assert "'400 Bad Request'" in str(refused.value)


def test_the_kserve_client_surfaces_an_unknown_model(server, kserve):
    request = kserve.InferRequest(
        model_name="no-such-model", infer_inputs=[text_input(kserve, TEXTS[:1], [1])]
    )

    async def scenario(client):
        return await client.infer(server.url, request, model_name="no-such-model")

    with pytest.raises(httpx.HTTPStatusError, match="unknown model 'no-such-model'") as refused:
        with_kserve_client(kserve, scenario)
    assert refused.value.response.status_code == 404


def test_logits_agree_with_the_v1_scores(server):
    with server.client() as client:
        v2 = client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(TEXTS))
        v1 = client.post(f"/v1/models/{VARIANT}/predict", json={"texts": TEXTS, "top_k": 1})
    assert v2.status_code == v1.status_code == 200
    assert v2.headers["x-brum-variant"] == VARIANT
    outputs = outputs_of(v2.json())
    assert [o["name"] for o in v2.json()["outputs"]] == ["logits", "label", "score"]
    logits = outputs["logits"]
    assert (logits["datatype"], logits["shape"]) == ("FP32", [2, len(LABELS)])
    probabilities = softmax(np.array(logits["data"], dtype=np.float32).reshape(2, -1))
    predictions = v1.json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in predictions]
    assert outputs["score"]["data"] == pytest.approx([p["score"] for p in predictions], abs=1e-6)
    top = [p["top_k"][0] for p in predictions]
    assert [LABELS[i] for i in probabilities.argmax(axis=1)] == [t["label"] for t in top]
    assert probabilities.max(axis=1) == pytest.approx([t["score"] for t in top], abs=1e-5)


def test_the_experiment_name_routes_through_the_ab_router(server):
    name, header = EXPERIMENT["name"], EXPERIMENT.get("sticky_header", "X-User-ID")
    served = set()
    with server.client() as client:
        for user in range(12):
            answers = {
                client.post(
                    f"/v2/models/{name}/infer", json=infer_body(TEXTS), headers={header: f"u{user}"}
                )
                for _ in range(2)
            }
            variants = {answer.headers["x-brum-variant"] for answer in answers}
            assert len(variants) == 1, "the same caller lands on the same arm"
            assert all(answer.json()["model_name"] == name for answer in answers)
            assert all(answer.headers["x-brum-experiment"] == name for answer in answers)
            served |= variants
    assert served <= ARMS and len(served) > 1


def test_outputs_filter_and_request_id(server):
    body = infer_body(TEXTS[:1], id="req-7", outputs=[{"name": "score"}, {"name": "label"}])
    with server.client() as client:
        answer = client.post(f"/v2/models/{VARIANT}/versions/1/infer", json=body)
        generated = client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(TEXTS[:1]))
    assert answer.status_code == 200
    assert answer.json()["id"] == "req-7"
    assert [o["name"] for o in answer.json()["outputs"]] == ["score", "label"]
    # Without an id the response carries the request id that is also logged and sent back.
    assert generated.json()["id"] == generated.headers["x-request-id"]


def test_unknown_fields_and_parameters_are_ignored_and_data_may_be_nested(server):
    tensor = {
        "name": "INPUT0",
        "shape": [2, 1],
        "datatype": "BYTES",
        "data": [[TEXTS[0]], [TEXTS[1]]],
        "parameters": {"binary_data": False, "content_type": "str"},
        "extra": 1,
    }
    body = {
        "inputs": [tensor],
        "parameters": {"binary_data_output": False, "priority": 0},
        "outputs": [{"name": "label", "parameters": {"binary_data": False}, "extra": True}],
        "sequence": "ignored",
    }
    with server.client() as client:
        answer = client.post(f"/v2/models/{VARIANT}/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert outputs_of(answer.json())["label"]["data"] == ["balance", "restaurant_reservation"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            400,
            "datatype must be BYTES",
        ),
        (
            {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]},
            400,
            "shape [3] does not hold 2 elements",
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [7]}]},
            400,
            "element 0 is not a string",
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["  "]}]},
            400,
            "empty or only whitespace",
        ),
        (
            {"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]},
            400,
            "no texts",
        ),
        ({**infer_body(TEXTS), "inputs": infer_body(TEXTS)["inputs"] * 2}, 400, "exactly one"),
        (infer_body(TEXTS, outputs=[{"name": "probabilities"}]), 400, "unknown outputs"),
        (infer_body(TEXTS, parameters={"binary_data_output": True}), 400, "binary"),
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": [{"name": "text", "datatype": "BYTES", "data": TEXTS}]}, 422, "shape"),
        ("[", 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_a_json_error(server, body, status, message):
    content = body if isinstance(body, str) else json.dumps(body)
    with server.client() as client:
        answer = client.post(
            f"/v2/models/{VARIANT}/infer",
            content=content,
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_binary_data_header_is_refused(server):
    with server.client() as client:
        answer = client.post(
            f"/v2/models/{VARIANT}/infer",
            json=infer_body(TEXTS),
            headers={"Inference-Header-Content-Length": "10"},
        )
    assert answer.status_code == 400
    assert "Inference-Header-Content-Length" in answer.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/ready",
        f"/v2/models/{VARIANT}/versions/2",
        f"/v2/models/{VARIANT}/versions/2/ready",
    ],
)
def test_unknown_model_or_version_is_404(server, path):
    with server.client() as client:
        answer = client.get(path)
        inferred = client.post(path.removesuffix("/ready") + "/infer", json=infer_body(TEXTS))
    for response in (answer, inferred):
        assert response.status_code == 404
        assert set(response.json()) == {"error"}
        assert "unknown model" in response.json()["error"]


def test_too_many_texts_is_413(server):
    with server.client() as client:
        answer = client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(["hello"] * 17))
    assert answer.status_code == 413 and "limit is 16" in answer.json()["error"]


def test_not_ready_until_warmed_up(tmp_path):
    with run_server(tmp_path, {"BRUM_WARMUP_ITERATIONS": "500"}, wait="/v2/health/live") as server:
        with server.client() as client:
            ready = client.get("/v2/health/ready")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            model = client.get(f"/v2/models/{VARIANT}/ready")
            assert (model.status_code, model.json()) == (503, {"name": VARIANT, "ready": False})
            # Metadata comes from the cards, which are read before the sessions load.
            assert client.get(f"/v2/models/{VARIANT}").status_code == 200
            refused = client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(TEXTS))
            assert refused.status_code == 503 and "not ready" in refused.json()["error"]
        wait_for(server.url, "/v2/health/ready", time.monotonic() + 60, server.process)
        with server.client() as client:
            assert client.post(f"/v2/models/{VARIANT}/infer", json=infer_body(TEXTS)).is_success
