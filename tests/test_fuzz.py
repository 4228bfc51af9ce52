"""Random inputs against the real server: every answer is a 2xx or a JSON 4xx, never a 5xx."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=20,
)
texts = st.text(st.characters(codec="utf-8"), max_size=300)
predict_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"text": texts}, optional={"top_k": st.integers(-5, 2000)}),
    st.fixed_dictionaries(
        {"texts": st.lists(texts | json_values, max_size=20)},
        optional={"top_k": st.integers(-5, 2000) | json_values},
    ),
    st.dictionaries(st.sampled_from(["text", "texts", "top_k", "extra"]), json_values),
)
variant_names = st.text(
    st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="/?#%"),
    min_size=1,
    max_size=20,
)
paths = st.sampled_from(["/v1/predict", "/v1/models/{v}/predict"]) | variant_names.map(
    lambda name: f"/v1/models/{name}/predict"
)

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and body["error"]


@FUZZ
@given(body=predict_bodies, path=paths)
def test_random_json_bodies_never_cause_a_server_error(server, body, path):
    from tests.test_service import DEFAULT

    with server.client() as client:
        check(client.post(path.replace("{v}", DEFAULT), content=json.dumps(body)))


@FUZZ
@given(
    raw=st.binary(max_size=2000), content_type=st.sampled_from(["application/json", "text/plain"])
)
def test_random_bytes_never_cause_a_server_error(server, raw, content_type):
    with server.client() as client:
        check(client.post("/v1/predict", content=raw, headers={"content-type": content_type}))


def test_server_still_healthy_after_fuzzing(server):
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/predict", json={"text": "set an alarm"}).status_code == 200
