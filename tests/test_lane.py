"""The prediction lane dispatches exactly the routes the v1 and V2 routers declare."""

from __future__ import annotations

import pytest

from app.transport import v1, v2
from app.transport.lane import PredictionRoutes

ROUTES = PredictionRoutes.of([*v1.router.routes, *v2.router.routes])


@pytest.mark.parametrize(
    ("path", "endpoint", "params"),
    [
        ("/v1/predict", v1.predict_default, {}),
        ("/v1/models/minilm-l3/predict", v1.predict_model, {"model": "minilm-l3"}),
        ("/v2/models/exp/infer", v2.infer_latest, {"model": "exp"}),
        ("/v2/models/exp/versions/1/infer", v2.infer_version, {"model": "exp", "version": "1"}),
    ],
)
def test_prediction_paths_reach_their_declared_endpoints(path, endpoint, params):
    assert ROUTES.match(path) == (endpoint, params)


@pytest.mark.parametrize(
    "path", ["/v1/models", "/v1/models/x", "/v1/feedback", "/v2/models/x", "/v1/predict/", "/"]
)
def test_other_paths_are_left_to_fastapi(path):
    assert ROUTES.match(path) is None


def test_a_missing_prediction_route_is_an_error_at_start():
    with pytest.raises(RuntimeError, match="prediction routes"):
        PredictionRoutes.of(v1.router.routes)
