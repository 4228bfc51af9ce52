"""The access log's lines: what the formatters write for a record, or a record where brum did not
set up logging, and nothing below the access logger's level."""

from __future__ import annotations

import asyncio
import logging

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


class Writes:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def brum_handler():
    """brum's own handler on the root logger, writing into a ``Writes``; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, ACCESS_LOGGER.level
    stream = Writes()
    handler = LineHandler(stream)
    handler.setFormatter(TextFormatter())
    root.handlers[:] = [handler]
    ACCESS_LOGGER.setLevel(logging.INFO)
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    ACCESS_LOGGER.setLevel(saved[2])


def test_lines_answered_in_one_turn_of_the_loop_are_written_together(brum_handler):
    access_log = AccessLog()

    async def answer(first: int, count: int) -> None:
        for request in range(first, first + count):
            access_log.write("POST", "/v1/predict", 200, 0.001, f"id{request}", "minilm")

    async def turns() -> list[list[str]]:
        await answer(0, 3)
        assert brum_handler.writes == []  # not yet: the loop's next turn writes them
        await asyncio.sleep(0)
        await answer(3, 1)
        await asyncio.sleep(0)
        return [write.splitlines() for write in brum_handler.writes]

    writes = asyncio.run(turns())
    assert [len(lines) for lines in writes] == [3, 1]
    ids = [line.split("request_id=")[1].split()[0] for lines in writes for line in lines]
    assert ids == ["id0", "id1", "id2", "id3"]


def test_outside_an_event_loop_a_line_is_written_at_once(brum_handler):
    AccessLog().write("GET", "/healthz", 200, 0.001, "0123abcd", None)
    (write,) = brum_handler.writes
    assert write.startswith(tuple("0123456789")) and "GET /healthz 200 1.000 ms" in write
