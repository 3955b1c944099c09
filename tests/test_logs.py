"""JSON logs: the access lines of one turn of the event loop are written together, and the log
keeps its order (a line logged after an access line is written after it)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
import structlog

from monolith import logs
from monolith.config import LogSettings
from monolith.logs import configure_logging, flush_access_log, get_logger, log_access


@pytest.fixture
def output() -> Iterator[io.BytesIO]:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw)  # kept: a dropped wrapper closes what it wraps
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = (logs._access.out, logs._access.enabled)
    configure_logging(LogSettings(level="info", format="json"), stream=stream)
    try:
        yield raw
    finally:
        flush_access_log()
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, level
        logs._access.out, logs._access.enabled = access


def lines(raw: io.BytesIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in raw.getvalue().splitlines()]


def test_access_lines_are_written_together_and_other_lines_come_after_them(
    output: io.BytesIO,
) -> None:
    async def turn() -> None:
        for status in (200, 304, 404):
            log_access("GET", "/api/products/{product_id}", status, 0.5, "127.0.0.1")
        assert output.getvalue() == b"", "written one by one"
        get_logger("monolith.test").info("after the requests")
        assert [e["event"] for e in lines(output)] == ["request"] * 3 + ["after the requests"]
        log_access("GET", "/api/products", 200, 0.2, "127.0.0.1")
        # Written within FLUSH_AFTER of the request (waited for with a deadline, not a sleep).
        deadline = time.monotonic() + 10
        while lines(output)[-1].get("route") != "/api/products":
            assert time.monotonic() < deadline, "the access line was never written"
            await asyncio.sleep(0.005)

    asyncio.run(turn())
    assert [e.get("status") for e in lines(output)] == [200, 304, 404, None, 200]


def test_without_an_event_loop_an_access_line_is_written_at_once(output: io.BytesIO) -> None:
    log_access("POST", "/api/orders", 201, 3.0, None)
    [line] = lines(output)
    assert line["route"] == "/api/orders" and line["status"] == 201 and line["level"] == "info"


def test_a_long_turn_writes_its_lines_before_they_pile_up(output: io.BytesIO) -> None:
    async def turn() -> None:
        for _ in range(300):
            log_access("GET", "/health/live", 200, 0.1, "127.0.0.1")
        assert len(lines(output)) >= 256

    asyncio.run(turn())
    flush_access_log()
    assert len(lines(output)) == 300
