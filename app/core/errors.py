"""Errors the core raises. Each says what kind of failure it is, not how a protocol reports it:
the transports map kinds to their own codes (app/transport/errors.py for HTTP), as
text-embeddings-inference's router maps its one error enum."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the input cannot be served as sent
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"  # an unknown variant, request or admin resource
    CONFLICT = "conflict"  # already done: a second judgment of one prediction
    EXPIRED = "expired"  # was valid, no longer is: an old feedback token
    TOO_LARGE = "too_large"
    OVERLOADED = "overloaded"  # refused at once to protect the others: the queue is full
    UNAVAILABLE = "unavailable"  # not ready, draining, timed out, or a shared store is down
    INTERNAL = "internal"


class BrumError(Exception):
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    # Seconds after which the same request may succeed; None: retrying will not help.
    retry_after: ClassVar[float | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # The variant the request had been routed to when it failed, if it had been.
        self.variant: str | None = None


class UnknownVariant(BrumError):
    kind = ErrorKind.NOT_FOUND


class TooManyTexts(BrumError):
    kind = ErrorKind.TOO_LARGE


class NotReady(BrumError):
    kind = ErrorKind.UNAVAILABLE
    retry_after = 1

    def __init__(self, message: str = "the service is not ready: variants are loading") -> None:
        super().__init__(message)


class QueueFull(BrumError):
    kind = ErrorKind.OVERLOADED
    retry_after = 1


class QueueTimeout(BrumError):
    kind = ErrorKind.UNAVAILABLE
    retry_after = 1
