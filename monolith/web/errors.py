"""Exception handlers: every error is ``{"status_code": N, "detail": "one line"}``.

A client never sees a stack trace. A 500 logs the trace with the request id; a dependency that
is down (StateUnavailable) is a 503 with ``Retry-After``; a refused constraint is a 409.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from monolith.errors import IntegrityViolation, StateUnavailable
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
    log.warning("dependency unavailable", path=request.url.path, error=str(exc))
    return _error(
        503, f"service temporarily unavailable: {exc}", {"Retry-After": str(exc.retry_after)}
    )


def integrity_violation(request: Req, exc: IntegrityViolation) -> Response[Any]:
    log.info("constraint refused a write", path=request.url.path, error=str(exc))
    return _error(409, "the change conflicts with existing data")


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
    StateUnavailable: state_unavailable,
    IntegrityViolation: integrity_violation,
    Exception: internal_error,
}
