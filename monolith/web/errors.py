"""Exception handlers: every error is ``{"status_code": N, "detail": "one line"}``.

A client never sees a stack trace. :data:`STATUS` is the one table from monolith's error kinds
(:mod:`monolith.errors`) to HTTP statuses, so a route raises what went wrong and never picks
a status for it; a dependency that is down (StateUnavailable) is a 503 with ``Retry-After``;
anything unexpected is a 500 whose trace goes to the log with the request id.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from monolith.errors import (
    Conflict,
    IntegrityViolation,
    InvalidField,
    InvalidInput,
    MonolithError,
    NotFound,
    PayloadTooLarge,
    StateUnavailable,
    UnsupportedType,
)
from monolith.logs import get_logger
from monolith.web.body import field_error

log = get_logger("monolith.http")

Req = Request[Any, Any, Any]


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def http_exception(_: Req, exc: HTTPException) -> Response[Any]:
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def validation_exception(_: Req, exc: ValidationException) -> Response[Any]:
    # Litestar's data/query validation: a named field is a 422, anything else (malformed
    # JSON, an unreadable body) stays a 400.
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("key"):
            return _error(422, f"{item['key']}: {item.get('message', 'invalid value')}")
        if isinstance(item, dict) and item.get("message"):
            err = field_error(str(item["message"]))
            return _error(422, str(err.detail))
    return _error(400, str(exc.detail))


def state_unavailable(request: Req, exc: StateUnavailable) -> Response[Any]:
    # The log gets the whole message; the client only the kind (no internal host or path).
    log.warning("dependency unavailable", path=request.url.path, error=str(exc))
    return _error(
        503,
        f"service temporarily unavailable: {exc.public}",
        {"Retry-After": str(exc.retry_after)},
    )


#: Each error kind's status; the most specific kind in an error's MRO wins.
STATUS: dict[type[MonolithError], int] = {
    InvalidInput: 400,
    InvalidField: 422,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedType: 415,
    StateUnavailable: 503,
}


def status_of(exc: MonolithError) -> int:
    """The HTTP status of a monolith error (500 for a kind that is not about a request)."""
    for kind in type(exc).__mro__:
        status = STATUS.get(kind)
        if status is not None:
            return status
    return HTTP_500_INTERNAL_SERVER_ERROR


def monolith_error(request: Req, exc: MonolithError) -> Response[Any]:
    status = status_of(exc)
    if status == 503:
        assert isinstance(exc, StateUnavailable)
        return state_unavailable(request, exc)
    if status == HTTP_500_INTERNAL_SERVER_ERROR:
        return internal_error(request, exc)
    if type(exc) is IntegrityViolation:
        # A constraint the database refused: its message names tables and values.
        log.info("constraint refused a write", path=request.url.path, error=str(exc))
        return _error(409, "the change conflicts with existing data")
    return _error(status, str(exc))


def internal_error(request: Req, exc: Exception) -> Response[Any]:
    log.error(
        "unhandled error",
        path=request.url.path,
        method=request.method,
        exc_info=exc,
    )
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


HANDLERS: dict[Any, Any] = {
    ValidationException: validation_exception,
    HTTPException: http_exception,
    MonolithError: monolith_error,
    Exception: internal_error,
}
