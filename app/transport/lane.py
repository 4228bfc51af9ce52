"""The prediction lane: POST /v1/predict and /v1/models/{variant}/predict, dispatched straight
from ASGI to the /v1 handler.

These two routes carry nearly all the traffic. FastAPI still declares and documents them (and
answers other methods on their paths), but dispatching them through its router, exception
middleware and per-request exit stacks cost more event-loop CPU than everything else a request
needs: 0.41 against 0.23 ms per request, saturated (BENCHMARKS.md). The lane sits inside the
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
from app.transport import errors
from app.transport.v1 import predict

PREDICT_PATH = re.compile(r"^/v1/(?:models/(?P<variant>[^/]+)/)?predict$")


class PredictionLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PREDICT_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            response = await predict(request, match["variant"])
        except RequestValidationError as exc:
            response = await errors.handle_validation(request, exc)
        except BrumError as exc:
            response = await errors.handle_brum_error(request, exc)
        except HTTPException as exc:
            response = await errors.handle_http(request, exc)
        await response(scope, receive, send)
