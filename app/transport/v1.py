"""The /v1 API: predictions and variant cards."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from app.core.card import VariantCard
from app.core.engine import Engine, Resolved
from app.core.errors import BrumError, UnknownVariant
from app.core.prediction import Prediction as CorePrediction
from app.core.prediction import PredictionBatch
from app.core.registry import Variant
from app.transport.errors import is_json, not_json_message
from app.transport.middleware import VARIANT_HEADER
from app.transport.schemas import (
    ErrorResponse,
    Feedback,
    FeedbackResponse,
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
# Also in the /v1 body; the header is how V2 answers carry it.
FEEDBACK_TOKEN_HEADER = "x-feedback-token"

router = APIRouter(prefix="/v1", tags=["v1"])


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def choose_variant(
    engine: Engine, request: Request, headers: MutableMapping[str, str], model: str | None
) -> Resolved:
    """What serves a request for ``model`` (see Engine.resolve); the response ``headers`` say
    which variant (and through which experiment)."""
    experiment = engine.experiment
    sticky = request.headers.get(experiment.sticky_header) if experiment else None
    resolved = engine.resolve(model, sticky)
    if resolved.experiment is not None:
        headers[EXPERIMENT_HEADER] = resolved.experiment
    headers[VARIANT_HEADER.decode()] = resolved.variant.name
    return resolved


@contextmanager
def answered_by(variant: Variant) -> Iterator[None]:
    """An error after routing (429, 503) still names its variant: header and metrics."""
    try:
        yield
    except BrumError as exc:
        exc.variant = exc.variant or variant.name
        raise


def set_answer_headers(headers: MutableMapping[str, str], batch: PredictionBatch) -> None:
    headers[QUEUE_TIME_HEADER] = f"{batch.queue_seconds * 1000:.3f}"
    headers[INFERENCE_TIME_HEADER] = f"{batch.inference_seconds * 1000:.3f}"
    if batch.feedback_token is not None:
        headers[FEEDBACK_TOKEN_HEADER] = batch.feedback_token


@dataclass(frozen=True)
class Reply:
    """The PredictResponse body, from the core's own prediction objects: serialized in one pass
    without building a pydantic model per prediction."""

    request_id: str
    variant: str
    predictions: list[CorePrediction]
    feedback_token: str | None


REPLY = TypeAdapter(Reply)
NO_TOKEN = {"feedback_token"}
# The hot path reads its body itself (below); the schema still documents it.
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


async def read_predict_request(request: Request) -> PredictRequest:
    """Parse and validate the body in one pass (pydantic-core reads the JSON); failures are the
    same 400/415/422 as FastAPI's own body handling."""
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        raise HTTPException(415, not_json_message(content_type))
    body = await request.body()
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


async def predict(request: Request, model: str | None) -> Response:
    """Both prediction routes; also dispatched directly by app/transport/lane.py."""
    engine = engine_of(request)
    body = await read_predict_request(request)
    request_id = request.state.request_id
    headers: dict[str, str] = {}
    resolved = choose_variant(engine, request, headers, model)
    variant = resolved.variant
    with answered_by(variant):
        batch = await engine.predict(
            variant,
            body.inputs,
            body.top_k,
            request_id=request_id,
            routed=resolved.experiment is not None,
        )
    set_answer_headers(headers, batch)
    reply = Reply(request_id, variant.name, batch.predictions, batch.feedback_token)
    content = REPLY.dump_json(reply, exclude=None if batch.feedback_token else NO_TOKEN)
    return Response(content, media_type="application/json", headers=headers)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=PREDICT_BODY,
    summary="Classify with the experiment's arm for this caller, or the default variant",
)
async def predict_default(request: Request) -> Response:
    return await predict(request, None)


@router.post(
    "/models/{model}/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=PREDICT_BODY,
    summary="Classify with a chosen variant, or through the experiment by its name",
)
async def predict_model(request: Request, model: str) -> Response:
    return await predict(request, model)


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
        410: {"model": ErrorResponse, "description": "the feedback token expired"},
        422: ERRORS[422],
        503: {"model": ErrorResponse, "description": "the shared store is unavailable"},
    },
    summary="The true label of a prediction: counts once towards the variant's online accuracy",
)
async def feedback(request: Request, body: Feedback) -> FeedbackResponse:
    judgement = await engine_of(request).judge(body.request_id, body.label, body.index, body.token)
    return FeedbackResponse.model_validate(judgement, from_attributes=True)
