"""Log lines: the access log's fast path writes what the formatters write for a record, and the
handler's blocks reach the stream when they should."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from app.logs import ACCESS_LOGGER, AccessLog, JsonFormatter, LineHandler, TextFormatter

FIELDS = {
    "request_id": "0123abcd",
    "method": "POST",
    "path": "/v1/predict",
    "status": 200,
    "variant": "minilm",
    "duration_ms": 1.234,
}


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
@pytest.mark.parametrize("variant", ["minilm", None])
def test_an_access_line_is_what_the_formatter_writes_for_its_record(formatter, variant):
    fields = {**FIELDS, "variant": variant}
    record = ACCESS_LOGGER.makeRecord(
        ACCESS_LOGGER.name, logging.INFO, __file__, 1, "POST /v1/predict 200 1.234 ms", (), None
    )
    record.__dict__.update(fields)
    for created in (record.created, 1_764_000_000.999, 1_764_000_001.0005):
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        line = formatter.line(created, "INFO", record.name, record.getMessage(), fields)
        assert line == formatter.format(record)


@pytest.fixture
def pipe():
    read, write = os.pipe()
    os.set_blocking(read, False)
    with os.fdopen(read, "rb") as reader, os.fdopen(write, "w") as writer:
        yield reader, writer


def arrived(reader) -> str:
    try:
        return (reader.read() or b"").decode()
    except BlockingIOError:
        return ""


def info(message: str) -> logging.LogRecord:
    return logging.LogRecord("brum", logging.INFO, __file__, 1, message, (), None)


def test_lines_wait_for_a_block_and_a_warning_sends_them_at_once(pipe):
    reader, writer = pipe
    handler = LineHandler(TextFormatter(), flush_seconds=3600, stream=writer)
    handler.handle(info("first"))
    handler.write_line("second")
    assert arrived(reader) == ""
    handler.handle(logging.LogRecord("brum", logging.WARNING, __file__, 1, "third", (), None))
    lines = arrived(reader).splitlines()
    assert [line.split()[-1] for line in lines] == ["first", "second", "third"]


def test_lines_are_flushed_every_interval(pipe):
    reader, writer = pipe
    handler = LineHandler(JsonFormatter(), flush_seconds=0.05, stream=writer)
    handler.handle(info("waits"))
    deadline = time.monotonic() + 10
    while not (text := arrived(reader)):
        assert time.monotonic() < deadline, "the line never came"
        time.sleep(0.02)
    assert json.loads(text)["message"] == "waits"


def test_without_blocks_every_line_goes_at_once(pipe):
    reader, writer = pipe
    handler = LineHandler(TextFormatter(), flush_seconds=0, stream=writer)
    handler.handle(info("now"))
    assert arrived(reader).split()[-1] == "now"


def test_without_brum_handler_the_access_line_is_a_record(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER.name)
    AccessLog().write("POST", "/v1/predict", 200, 0.001234, "0123abcd", "minilm")
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER.name]
    assert record.getMessage() == "POST /v1/predict 200 1.234 ms"
    assert (record.request_id, record.variant, record.status) == ("0123abcd", "minilm", 200)


def test_the_access_log_follows_the_level(caplog):
    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER.name)
    AccessLog().write("POST", "/v1/predict", 200, 0.001, "0123abcd", "minilm")
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER.name]
