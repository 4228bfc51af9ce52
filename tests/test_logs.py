"""The access log's lines: what the formatters write for a record, or a record where brum did not
set up logging, and nothing below the access logger's level."""

from __future__ import annotations

import logging

import pytest

from app.logs import ACCESS_LOGGER, AccessLog, JsonFormatter, TextFormatter

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
