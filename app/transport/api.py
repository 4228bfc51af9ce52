"""The FastAPI application: wires the engine (core) to the routes (transport)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from app import __version__
from app.core.engine import Engine
from app.settings import Settings
from app.siblings import Share
from app.transport import admin, errors, health, v1, v2
from app.transport.lane import PredictionLane, PredictionRoutes
from app.transport.middleware import BodyLimitMiddleware, RequestContextMiddleware

logger = logging.getLogger("brum.api")


async def _load(engine: Engine) -> None:
    try:
        await engine.load()
    except Exception:
        # A variant that cannot load leaves the service unable to serve its traffic: stop, loudly,
        # so the orchestrator restarts it and the logs say why.
        logger.exception("loading the model repository failed; shutting down")
        os.kill(os.getpid(), signal.SIGTERM)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    loading = asyncio.create_task(_load(engine))
    try:
        yield
    finally:
        loading.cancel()
        await engine.close()


def create_app(settings: Settings | None = None, share: Share | None = None) -> FastAPI:
    """The API: its routes, error handlers and OpenAPI document. ``python -m app`` serves it
    through ``serving_app``; ``share``: the process's part of the machine, when it is one of
    several (app/supervisor.py)."""
    settings = settings or Settings()
    engine = Engine(settings, share=share)

    app = FastAPI(
        title="brum",
        version=__version__,
        description="Serve compressed transformer classifiers; compare variants on live traffic.",
        lifespan=lifespan,
        # Accept JSON bodies sent without a JSON content type (curl -d, quick scripts).
        strict_content_type=False,
    )
    app.state.engine = engine
    app.state.settings = settings
    errors.install(app)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    return app


def serving_app(app: FastAPI) -> ASGIApp:
    """What the server runs: request ids, metrics and the access log, then the body limit, then
    the prediction lane, in front of ``app``. Every request passes all three; the prediction
    routes then skip FastAPI's own per-request layers (app/transport/lane.py)."""
    engine: Engine = app.state.engine
    routes = PredictionRoutes.of([*v1.router.routes, *v2.router.routes])

    def metered_variant(path: str) -> str | None:
        match = routes.match(path)
        return None if match is None else engine.metered_variant(match[1].get("model"))

    lane = PredictionLane(app, routes)
    limited = BodyLimitMiddleware(lane, max_bytes=app.state.settings.max_body_bytes)
    return RequestContextMiddleware(
        limited, metrics=engine.metrics, metered_variant=metered_variant
    )
