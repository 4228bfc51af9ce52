"""The FastAPI application: wires the engine (core) to the routes (transport)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.core.engine import Engine
from app.settings import Settings
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = Engine(settings)

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
    routes = PredictionRoutes.of([*v1.router.routes, *v2.router.routes])

    def metered_variant(path: str) -> str | None:
        match = routes.match(path)
        return None if match is None else engine.metered_variant(match[1].get("model"))

    app.add_middleware(PredictionLane, routes=routes)  # innermost: inside the limit, ids, metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestContextMiddleware, metrics=engine.metrics, metered_variant=metered_variant
    )
    return app
