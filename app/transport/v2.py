"""The Open Inference Protocol (KServe V2) REST API: health, model metadata and inference.

A model is a variant, or the experiment (its name routes through the A/B router). Texts go in as
one BYTES tensor; logits, the served label and its score come out as JSON tensors.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from app import __version__
from app.core.engine import Engine
from app.transport.schemas import ErrorResponse
from app.transport.v1 import answered_by, choose_variant, set_answer_headers

MODEL_VERSION = "1"
OUTPUTS = ("logits", "label", "score")
# The binary tensor extension: a JSON header followed by raw bytes. Not implemented, so say so
# instead of failing later on a body that is not JSON.
BINARY_HEADER = "inference-header-content-length"
BINARY_PARAMETERS = ("binary_data", "binary_data_output")

ERRORS = {
    400: {"model": ErrorResponse, "description": "invalid inference request"},
    404: {"model": ErrorResponse, "description": "unknown model or version"},
    413: {"model": ErrorResponse, "description": "body too large or too many texts"},
    422: {"model": ErrorResponse, "description": "request does not match the schema"},
    503: {"model": ErrorResponse, "description": "not ready yet"},
}

router = APIRouter(tags=["v2"])


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


READY_RESPONSES = {**ERRORS, 200: {"model": ModelReady}, 503: {"model": ModelReady}}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class OutputTensor(TensorMetadata):
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its ``$defs`` substituted: OpenAPI resolves ``#/$defs`` from its own root."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


# The body is parsed by hand (see _read), so describe it to OpenAPI explicitly.
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(InferRequest.model_json_schema())}},
    }
}


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _check_version(version: str) -> None:
    if version != MODEL_VERSION:
        raise HTTPException(404, f"unknown model version {version!r}; available: {MODEL_VERSION}")


async def _read(request: Request) -> InferRequest:
    # Parsed here rather than by FastAPI so a binary-extension body gets its own clear 400.
    if BINARY_HEADER in request.headers:
        raise bad_request(
            "the binary tensor data extension is not supported: send JSON tensors "
            "without the Inference-Header-Content-Length header"
        )
    try:
        body = InferRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    scopes = [body.parameters, *(i.parameters for i in body.inputs)]
    scopes += [o.parameters for o in body.outputs or []]
    for parameters in scopes:
        for key in BINARY_PARAMETERS:
            if parameters and parameters.get(key) is True:
                raise bad_request(
                    f"the binary tensor data extension is not supported: "
                    f"set parameter {key!r} to false or leave it out"
                )
    return body


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _texts(inputs: list[InferInput]) -> list[str]:
    if len(inputs) != 1:
        raise bad_request(f"expected exactly one input (the texts), got {len(inputs)}")
    tensor = inputs[0]
    where = f"input {tensor.name!r}"
    if tensor.datatype != "BYTES":
        raise bad_request(f"{where}: datatype must be BYTES, not {tensor.datatype!r}")
    texts = _flatten(tensor.data)
    if any(dim < 0 for dim in tensor.shape) or math.prod(tensor.shape) != len(texts):
        raise bad_request(f"{where}: shape {tensor.shape} does not hold {len(texts)} elements")
    if not texts:
        raise bad_request(f"{where}: no texts to classify")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise bad_request(f"{where}: element {index} is not a string")
        if not text.strip():
            raise bad_request(f"{where}: element {index} is empty or only whitespace")
    return texts


def _wanted(outputs: list[RequestedOutput] | None) -> list[str]:
    if outputs is None:
        return list(OUTPUTS)
    names = [output.name for output in outputs]
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise bad_request(f"unknown outputs {unknown}; available: {', '.join(OUTPUTS)}")
    return list(dict.fromkeys(names))


async def infer(request: Request, name: str, version: str) -> Response:
    """Both infer routes; also dispatched directly by app/transport/lane.py."""
    _check_version(version)
    engine = engine_of(request)
    engine.card(name)
    body = await _read(request)
    texts = _texts(body.inputs)
    wanted = _wanted(body.outputs)
    headers: dict[str, str] = {}
    resolved = choose_variant(engine, request, headers, name)
    variant = resolved.variant
    # As on /v1: remembered under the request id for feedback, and a routed request may be shadowed.
    with answered_by(variant):
        batch = await engine.predict(
            variant,
            texts,
            top_k=1,
            request_id=request.state.request_id,
            routed=resolved.experiment is not None,
        )
    set_answer_headers(headers, batch)
    n, classes = batch.logits.shape
    tensors = {
        "logits": OutputTensor(
            name="logits", datatype="FP32", shape=[n, classes], data=batch.logits.ravel().tolist()
        ),
        "label": OutputTensor(
            name="label", datatype="BYTES", shape=[n], data=[p.label for p in batch.predictions]
        ),
        "score": OutputTensor(
            name="score", datatype="FP32", shape=[n], data=[p.score for p in batch.predictions]
        ),
    }
    reply = InferResponse(
        model_name=name,
        model_version=MODEL_VERSION,
        id=body.id if body.id is not None else request.state.request_id,
        outputs=[tensors[output] for output in wanted],
    )
    return Response(reply.model_dump_json(), media_type="application/json", headers=headers)


def _metadata(engine: Engine, name: str, version: str) -> ModelMetadata:
    _check_version(version)
    classes = len(engine.card(name).labels)
    return ModelMetadata(
        name=name,
        versions=[MODEL_VERSION],
        platform="onnxruntime_onnx",
        inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
        outputs=[
            TensorMetadata(name="logits", datatype="FP32", shape=[-1, classes]),
            TensorMetadata(name="label", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="score", datatype="FP32", shape=[-1]),
        ],
    )


def _model_ready(engine: Engine, name: str, version: str) -> JSONResponse:
    _check_version(version)
    engine.card(name)
    return JSONResponse({"name": name, "ready": engine.ready}, 200 if engine.ready else 503)


@router.get("/v2", summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="brum", version=__version__, extensions=[])


@router.get("/v2/health/live", summary="Liveness: the process is up and answering")
async def live() -> ServerLive:
    return ServerLive(live=True)


@router.get(
    "/v2/health/ready",
    summary="Readiness: every model is loaded and warmed up",
    responses={200: {"model": ServerReady}, 503: {"model": ServerReady}},
)
async def ready(request: Request) -> JSONResponse:
    is_ready = engine_of(request).ready
    return JSONResponse({"ready": is_ready}, 200 if is_ready else 503)


@router.get("/v2/models/{name}", responses=ERRORS, summary="Model metadata")
async def model_metadata(request: Request, name: str) -> ModelMetadata:
    return _metadata(engine_of(request), name, MODEL_VERSION)


@router.get(
    "/v2/models/{name}/versions/{version}", responses=ERRORS, summary="Model metadata of a version"
)
async def model_version_metadata(request: Request, name: str, version: str) -> ModelMetadata:
    return _metadata(engine_of(request), name, version)


@router.get("/v2/models/{name}/ready", responses=READY_RESPONSES, summary="Model readiness")
async def model_ready(request: Request, name: str) -> JSONResponse:
    return _model_ready(engine_of(request), name, MODEL_VERSION)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    responses=READY_RESPONSES,
    summary="Model version readiness",
)
async def model_version_ready(request: Request, name: str, version: str) -> JSONResponse:
    return _model_ready(engine_of(request), name, version)


@router.post(
    "/v2/models/{model}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    summary="Classify texts",
)
async def infer_latest(request: Request, model: str) -> Response:
    return await infer(request, model, MODEL_VERSION)


@router.post(
    "/v2/models/{model}/versions/{version}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    summary="Classify texts with a model version",
)
async def infer_version(request: Request, model: str, version: str) -> Response:
    return await infer(request, model, version)
