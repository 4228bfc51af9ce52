"""The prediction lane: the prediction routes — POST /v1/predict, /v1/models/{variant}/predict
and the V2 protocol's /v2/models/{name}[/versions/{version}]/infer — dispatched straight from ASGI
to their handlers.

These routes carry nearly all the traffic. FastAPI still declares and documents them (and
answers other methods on their paths), but dispatching them through its router, exception
middleware and per-request exit stacks cost more event-loop CPU than everything else a request
needs: 0.41 against 0.23 ms per /v1 request, saturated (BENCHMARKS.md). The lane sits inside the
request-id, metrics and body-limit middleware, so requests keep all of that, and it renders errors
with the same handlers as the rest of the API.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.transport import errors, v1, v2

# ``model``: a variant or experiment name; absent on /v1/predict (the experiment routes it).
V1_PATH = re.compile(r"^/v1/(?:models/(?P<model>[^/]+)/)?predict$")
V2_PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


def prediction_path(path: str) -> re.Match[str] | None:
    return V1_PATH.match(path) or V2_PATH.match(path)


async def dispatch(request: Request, match: re.Match[str]) -> Response:
    if match.re is V1_PATH:
        return await v1.predict(request, match["model"])
    return await v2.infer(request, match["model"], match["version"] or v2.MODEL_VERSION)


class PredictionLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_post = scope["type"] == "http" and scope["method"] == "POST"
        match = prediction_path(scope["path"]) if is_post else None
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            response = await dispatch(request, match)
        except tuple(errors.HANDLERS) as exc:
            response = await errors.render(request, exc)
        await response(scope, receive, send)
