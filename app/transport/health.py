"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.exposition import choose_encoder

from app.transport.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up and answering")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: every variant is loaded and warmed up",
    responses={503: {"model": Health}},
)
async def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.engine
    ready = engine.ready
    variants = {name: ready for name in sorted(engine.variant_names)}
    body = Health(status="ready" if ready else "loading", variants=variants)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    payload = encoder(request.app.state.engine.metrics.exposed())
    return Response(payload, media_type=content_type)
