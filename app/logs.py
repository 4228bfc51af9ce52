"""Logging: plain text for people, or one JSON object per line for log pipelines."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime

ACCESS_LOGGER = logging.getLogger("brum.access")
# Fields the service attaches to records with ``extra=``; they become JSON keys.
CONTEXT_FIELDS = ("request_id", "method", "path", "status", "variant", "duration_ms")
# Text lines add these; the rest is already in the access line's message.
TEXT_CONTEXT_FIELDS = ("request_id", "variant")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: getattr(record, k) for k in CONTEXT_FIELDS if hasattr(record, k)}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    def line(self, created: float, level: str, logger: str, message: str, fields: dict) -> str:
        entry = {
            "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": level.lower(),
            "logger": logger,
            "message": message,
            **fields,
        }
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line for people; a request's id and variant follow as ``key=value``, so the id a
    client got back in ``X-Request-ID`` finds its line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.second = (-1, "")  # the last whole second formatted, and its text

    def format(self, record: logging.LogRecord) -> str:
        return self.with_context(super().format(record), record.__dict__)

    def line(self, created: float, level: str, logger: str, message: str, fields: dict) -> str:
        return self.with_context(f"{self.timestamp(created)} {level} {logger} {message}", fields)

    def timestamp(self, created: float) -> str:
        """What ``formatTime`` writes, with the date and time formatted once a second."""
        whole = int(created)
        if self.second[0] != whole:
            self.second = (whole, time.strftime(self.default_time_format, self.converter(created)))
        return self.default_msec_format % (self.second[1], int((created - whole) * 1000))

    @staticmethod
    def with_context(line: str, fields: dict) -> str:
        context = [
            f"{key}={value}"
            for key in TEXT_CONTEXT_FIELDS
            if (value := fields.get(key)) is not None
        ]
        return " ".join([line, *context])


class LineHandler(logging.StreamHandler):
    """A stream handler that also writes lines formatted elsewhere: the access log's."""

    formatter: TextFormatter | JsonFormatter

    def write_lines(self, lines: list[str]) -> None:
        with self.lock:
            self.stream.write("".join(line + self.terminator for line in lines))
            self.flush()


class AccessLog:
    """The access log: one line per request, formatted from its fields by the configured
    formatter and written straight to brum's handler. Why not through a ``LogRecord``: making
    and formatting one (caller lookup, process id, thread, %-formatting) cost the event loop 8 us
    a request, 8-12% of texts/s at 8-64 connections (BENCHMARKS.md).

    The lines of the requests a turn of the event loop answers are written together at its next
    turn: under load a batch answers up to 32 requests at once, and a write per line was a tenth
    of the loop's time at 32 connections (BENCHMARKS.md, 2026-12-06). A lone request's line is
    written one turn after its answer."""

    def __init__(self) -> None:
        root = logging.getLogger()
        self.handler = next((h for h in root.handlers if isinstance(h, LineHandler)), None)
        self.enabled = ACCESS_LOGGER.isEnabledFor(logging.INFO)
        self.pending: list[str] = []

    def write(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float,
        request_id: str,
        variant: str | None,
    ) -> None:
        if not self.enabled:
            return
        milliseconds = seconds * 1000
        message = f"{method} {path} {status} {milliseconds:.3f} ms"
        fields = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "variant": variant,
            "duration_ms": round(milliseconds, 3),
        }
        if self.handler is None:  # logging set up by whoever embeds brum's app, not by brum
            ACCESS_LOGGER.info(message, extra=fields)
            return
        formatter = self.handler.formatter
        self.pending.append(
            formatter.line(time.time(), "INFO", ACCESS_LOGGER.name, message, fields)
        )
        if len(self.pending) > 1:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop runs here: nothing would come back to write it
            self.flush()

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        if lines and self.handler is not None:
            self.handler.write_lines(lines)


def configure_logging(level: str, log_format: str) -> None:
    handler = LineHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's loggers would print in their own format; ours carries the request id instead.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
