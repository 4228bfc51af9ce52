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

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import BrumError
from app.transport import errors, v1, v2

V1_PATH = re.compile(r"^/v1/(?:models/(?P<variant>[^/]+)/)?predict$")
V2_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


async def dispatch(request: Request) -> Response | None:
    """The handler's response, or None when the request is not a prediction."""
    path = request.scope["path"]
    if (match := V1_PATH.match(path)) is not None:
        return await v1.predict(request, match["variant"])
    if (match := V2_PATH.match(path)) is not None:
        return await v2.infer(request, match["name"], match["version"] or v2.MODEL_VERSION)
    return None


class PredictionLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response | None
        try:
            response = await dispatch(request)
        except RequestValidationError as exc:
            response = await errors.handle_validation(request, exc)
        except BrumError as exc:
            response = await errors.handle_brum_error(request, exc)
        except HTTPException as exc:
            response = await errors.handle_http(request, exc)
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
