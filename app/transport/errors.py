"""Every error is JSON: ``{"error": "<what and where>", "detail": [...]}`` with the right status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.core.errors import BrumError, ErrorKind
from app.transport.middleware import VARIANT_HEADER


def error_response(
    status: int,
    message: str,
    detail: list[dict] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "body"


def not_json_message(content_type: str) -> str:
    return f"send the body as JSON with Content-Type: application/json, not {content_type!r}"


def is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in {"", "application/json"} or media_type.endswith("+json")


async def handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Echoing "input" back could return megabytes of text; keep where and what only.
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        return error_response(415, not_json_message(content_type))
    if any(d["type"] == "json_invalid" for d in detail):
        return error_response(400, "request body is not valid JSON", detail)
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    message = f"invalid request at {_location(tuple(first['loc']))}: {first['msg']}"
    return error_response(422, message, detail)


STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.EXPIRED: 410,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}


def brum_error_headers(exc: BrumError) -> dict[str, str]:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = f"{exc.retry_after:g}"
    if exc.kind is ErrorKind.UNAUTHENTICATED:  # only the admin API asks for credentials
        headers["WWW-Authenticate"] = 'Bearer realm="brum-admin"'
    if exc.variant is not None:
        headers[VARIANT_HEADER.decode()] = exc.variant
    return headers


async def handle_brum_error(_: Request, exc: BrumError) -> JSONResponse:
    return error_response(STATUS[exc.kind], exc.message, headers=brum_error_headers(exc))


# What FastAPI raises when a body cannot even be decoded (not UTF-8, say).
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


async def handle_http(_: Request, exc: HTTPException) -> JSONResponse:
    message = str(exc.detail)
    if exc.status_code == 400 and message == FASTAPI_BODY_PARSE_ERROR:
        message = "request body is not valid JSON: it could not be decoded as UTF-8 JSON"
    return error_response(exc.status_code, message, headers=exc.headers)


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    RequestValidationError: handle_validation,
    BrumError: handle_brum_error,
    HTTPException: handle_http,
}


async def render(request: Request, exc: Exception) -> JSONResponse:
    """The response for ``exc``, one of the HANDLERS' exceptions (or a subclass), outside FastAPI's
    exception middleware (app/transport/lane.py)."""
    handler = next(HANDLERS[cls] for cls in type(exc).__mro__ if cls in HANDLERS)
    return await handler(request, exc)


def install(app: FastAPI) -> None:
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
