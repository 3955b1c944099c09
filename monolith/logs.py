"""Structured logs: JSON when not on a terminal, console otherwise, a request id on every line.

The request id lives in a ContextVar set by the request middleware; a processor copies it into
every event logged while that request runs (also from code that knows nothing of requests).
Never log a password, a session id or a token: log the user id instead.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import msgspec
import structlog

from monolith.config import LogSettings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_encoder = msgspec.json.Encoder(enc_hook=str)


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    rid = request_id_var.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def _json_bytes(_: Any, __: str, event: dict[str, Any]) -> bytes:
    return _encoder.encode(event)


def configure_logging(settings: LogSettings) -> None:
    """Set up structlog (and route the standard library's logging through the same output)."""
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    if settings.format == "json":
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            _json_bytes,
        ]
        factory: Any = structlog.BytesLoggerFactory(sys.stdout.buffer)
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())]
        factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; keep their warnings, in the same stream.
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler(sys.stderr)]
    root.setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
