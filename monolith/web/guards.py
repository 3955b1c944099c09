"""Who may do what: the admin guard.

Admin means ``Authorization: Bearer $MONOLITH_ADMIN_TOKEN`` (compared in constant time).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from monolith.config import Settings

Guard = Any


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin_token(settings: Settings, token: str | None) -> bool:
    expected = settings.security.admin_token
    return bool(expected and token and hmac.compare_digest(token.encode(), expected.encode()))


def admin_guard(settings: Settings) -> Guard:
    """A Litestar guard admitting only admins."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = bearer_token(connection)
        if is_admin_token(settings, token):
            return
        if token is None:
            raise NotAuthorizedException(detail="sign in as an admin or send the admin token")
        raise PermissionDeniedException(detail="admin only")

    return guard
