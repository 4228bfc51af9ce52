"""Errors the core raises, each with the HTTP status the transport maps it to."""

from __future__ import annotations


class BrumError(Exception):
    status_code = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class UnknownVariant(BrumError):
    status_code = 404


class TooManyTexts(BrumError):
    status_code = 413


class NotReady(BrumError):
    status_code = 503

    def __init__(self, message: str = "the service is not ready: variants are loading") -> None:
        super().__init__(message, {"Retry-After": "1"})


class QueueFull(BrumError):
    status_code = 429

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})


class QueueTimeout(BrumError):
    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})
