"""The prediction lane: the prediction routes — POST /v1/predict, /v1/models/{model}/predict
and the V2 protocol's /v2/models/{model}[/versions/{version}]/infer — dispatched straight from ASGI
to their endpoints.

These routes carry nearly all the traffic. FastAPI still declares and documents them (and
answers other methods on their paths), but dispatching them through its router, exception
middleware and per-request exit stacks cost more event-loop CPU than everything else a request
needs: 0.41 against 0.23 ms per /v1 request, saturated (BENCHMARKS.md). The lane matches the
routes as the v1 and V2 routers declare them (their compiled paths, their endpoints), so there is
one route table. It sits inside the request-id, metrics and body-limit middleware, so requests
keep all of that, and it renders errors with the same handlers as the rest of the API.

It sits in front of FastAPI, not inside it: FastAPI's application layers (its body limit, server
error and exception-telemetry middleware) cost each prediction another 4-6% of saturated
throughput on a 2-core Xeon (BENCHMARKS.md, 2026-12-05), and do nothing here that brum's own
layers do not. An unexpected error still answers 500, from uvicorn instead of Starlette.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.transport import errors, v1, v2

Endpoint = Callable[..., Awaitable[Response]]
# Their path parameters: ``model`` (a variant or experiment name; absent on /v1/predict, which
# the experiment routes) and V2's ``version``.
LANE_ENDPOINTS: frozenset[Endpoint] = frozenset(
    {v1.predict_default, v1.predict_model, v2.infer_latest, v2.infer_version}
)


@dataclass(frozen=True)
class PredictionRoutes:
    routes: tuple[tuple[re.Pattern[str], Endpoint], ...]

    @classmethod
    def of(cls, declared: Sequence[BaseRoute]) -> PredictionRoutes:
        """The lane's routes among those the routers declare: POST routes whose endpoint is a
        lane endpoint."""
        routes = tuple(
            (route.path_regex, route.endpoint)
            for route in declared
            if isinstance(route, APIRoute)
            and route.endpoint in LANE_ENDPOINTS
            and "POST" in route.methods
        )
        if len(routes) != len(LANE_ENDPOINTS):
            raise RuntimeError("the prediction routes are not all among the routes given")
        return cls(routes)

    def match(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        for pattern, endpoint in self.routes:
            found = pattern.match(path)
            if found is not None:
                return endpoint, found.groupdict()
        return None


class PredictionLane:
    def __init__(self, app: ASGIApp, routes: PredictionRoutes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_post = scope["type"] == "http" and scope["method"] == "POST"
        match = self.routes.match(scope["path"]) if is_post else None
        if match is None:
            await self.app(scope, receive, send)
            return
        endpoint, params = match
        scope["app"] = self.app  # as FastAPI would: the endpoints find the engine in its state
        request = Request(scope, receive)
        response: Response
        try:
            response = await endpoint(request, **params)
        except tuple(errors.HANDLERS) as exc:
            response = await errors.render(request, exc)
        await response(scope, receive, send)
