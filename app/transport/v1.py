"""The /v1 API: predictions and variant cards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Request, Response

from app.core.card import VariantCard
from app.core.engine import Engine
from app.core.errors import BrumError, UnknownVariant
from app.core.prediction import PredictionBatch
from app.core.registry import Variant
from app.transport.middleware import VARIANT_HEADER
from app.transport.schemas import (
    ErrorResponse,
    Feedback,
    FeedbackResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
)

ERRORS = {
    400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
    404: {"model": ErrorResponse, "description": "unknown variant"},
    413: {"model": ErrorResponse, "description": "body too large or too many texts"},
    415: {"model": ErrorResponse, "description": "the body is not sent as JSON"},
    422: {"model": ErrorResponse, "description": "invalid input"},
    503: {"model": ErrorResponse, "description": "not ready yet"},
}

EXPERIMENT_HEADER = "x-brum-experiment"
# Like text-embeddings-inference: where the time went, in milliseconds (x-total-time is added by
# the middleware, which sees the whole request).
QUEUE_TIME_HEADER = "x-queue-time"
INFERENCE_TIME_HEADER = "x-inference-time"

router = APIRouter(prefix="/v1", tags=["v1"])


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def choose_variant(
    engine: Engine, request: Request, response: Response, name: str | None
) -> Variant:
    """The named variant, or (``None``) the experiment's arm for this caller; the response says
    which (and through which experiment)."""
    if name is None:
        experiment = engine.experiment
        sticky = request.headers.get(experiment.sticky_header) if experiment else None
        variant = engine.route(sticky)
        if experiment is not None:
            response.headers[EXPERIMENT_HEADER] = experiment.name
    else:
        variant = engine.variant(name)
    response.headers[VARIANT_HEADER.decode()] = variant.name
    return variant


@contextmanager
def answered_by(variant: Variant) -> Iterator[None]:
    """An error after routing (429, 503) still names its variant: header and metrics."""
    try:
        yield
    except BrumError as exc:
        exc.headers.setdefault(VARIANT_HEADER.decode(), variant.name)
        raise


def set_timing_headers(response: Response, batch: PredictionBatch) -> None:
    response.headers[QUEUE_TIME_HEADER] = f"{batch.queue_seconds * 1000:.3f}"
    response.headers[INFERENCE_TIME_HEADER] = f"{batch.inference_seconds * 1000:.3f}"


async def _predict(
    request: Request, response: Response, body: PredictRequest, variant_name: str | None
) -> PredictResponse:
    engine = engine_of(request)
    request_id = request.state.request_id
    variant = choose_variant(engine, request, response, variant_name)
    with answered_by(variant):
        batch = await engine.predict(
            variant, body.inputs, body.top_k, request_id=request_id, routed=variant_name is None
        )
    set_timing_headers(response, batch)
    return PredictResponse(
        request_id=request_id,
        variant=variant.name,
        predictions=[Prediction.model_validate(p, from_attributes=True) for p in batch.predictions],
    )


@router.post(
    "/predict",
    responses=ERRORS,
    summary="Classify with the experiment's arm for this caller, or the default variant",
)
async def predict_default(
    request: Request, response: Response, body: PredictRequest
) -> PredictResponse:
    return await _predict(request, response, body, None)


@router.post(
    "/models/{variant}/predict", responses=ERRORS, summary="Classify with a chosen variant"
)
async def predict_variant(
    request: Request, response: Response, variant: str, body: PredictRequest
) -> PredictResponse:
    return await _predict(request, response, body, variant)


@router.get("/models", summary="Cards of every variant")
async def list_models(request: Request) -> dict:
    engine = engine_of(request)
    return {
        "default": engine.default_variant,
        "experiment": engine.experiment.model_dump() if engine.experiment else None,
        "ready": engine.ready,
        "models": [card.model_dump(mode="json") for _, card in engine.cards],
    }


@router.get("/models/{variant}", responses={404: ERRORS[404]}, summary="Card of one variant")
async def get_model(request: Request, variant: str) -> VariantCard:
    engine = engine_of(request)
    for _, card in engine.cards:
        if card.name == variant:
            return card
    raise UnknownVariant(
        f"unknown variant {variant!r}; available: {', '.join(sorted(engine.variant_names))}"
    )


@router.post(
    "/feedback",
    responses={
        404: {"model": ErrorResponse, "description": "request id unknown or forgotten"},
        409: {"model": ErrorResponse, "description": "this text was already judged"},
        422: ERRORS[422],
    },
    summary="The true label of a recent prediction: counts towards the variant's online accuracy",
)
async def feedback(request: Request, body: Feedback) -> FeedbackResponse:
    judgement = engine_of(request).judge(body.request_id, body.label, body.index)
    return FeedbackResponse.model_validate(judgement, from_attributes=True)
