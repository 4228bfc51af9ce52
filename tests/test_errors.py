"""The core's errors carry a kind, never an HTTP status; the HTTP transport maps every kind."""

from __future__ import annotations

import pytest

from app.core.coordination import CoordinationUnavailable
from app.core.errors import BrumError, ErrorKind, NotReady, QueueFull, TooManyTexts, UnknownVariant
from app.core.feedback import AlreadyJudged, ExpiredToken, StoreUnavailable, UnknownRequest
from app.transport.errors import STATUS, brum_error_headers


def test_every_kind_has_a_status():
    assert set(STATUS) == set(ErrorKind)


@pytest.mark.parametrize(
    ("error", "status", "retry"),
    [
        (UnknownVariant("x"), 404, None),
        (TooManyTexts("x"), 413, None),
        (QueueFull("x"), 429, "1"),
        (NotReady(), 503, "1"),
        (UnknownRequest("x"), 404, None),
        (AlreadyJudged("x"), 409, None),
        (ExpiredToken("x"), 410, None),
        (StoreUnavailable("x"), 503, "1"),
        (CoordinationUnavailable("x"), 503, "1"),
    ],
)
def test_kinds_map_to_statuses_and_retry_hints(error: BrumError, status: int, retry: str | None):
    assert STATUS[error.kind] == status
    assert brum_error_headers(error).get("Retry-After") == retry


def test_the_routed_variant_is_named_in_the_answer():
    error = QueueFull("the queue is full")
    assert "x-brum-variant" not in brum_error_headers(error)
    error.variant = "minilm-l3-int8"
    assert brum_error_headers(error)["x-brum-variant"] == "minilm-l3-int8"
