"""Who may do what: the admin guard.

Admin means ``Authorization: Bearer $MONOLITH_ADMIN_TOKEN`` (compared in constant time), or
the ``/admin`` page's signed cookie (:mod:`monolith.web.admin_session`; changes need its CSRF
header too).
``/metrics`` also admits a direct loopback client (Prometheus on the same box), but not one
that came through a proxy: Caddy connects from loopback too, and says so in its headers.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from monolith.config import Settings
from monolith.web import admin_session

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
        if token is None and admin_session.valid(
            settings, connection.cookies.get(admin_session.COOKIE)
        ):
            safe = connection.scope.get("method", "GET") in ("GET", "HEAD")
            if safe or connection.headers.get(admin_session.CSRF_HEADER):
                return
            raise PermissionDeniedException(
                detail=f"missing the {admin_session.CSRF_HEADER} header"
            )
        if token is None:
            raise NotAuthorizedException(detail="sign in as an admin or send the admin token")
        raise PermissionDeniedException(detail="admin only")

    return guard


_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def is_direct_loopback(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True for a client on this box that did not come through a proxy."""
    client = connection.scope.get("client")
    if not client:
        return False
    try:
        if not ipaddress.ip_address(client[0]).is_loopback:
            return False
    except ValueError:
        return False
    return not any(name in _PROXY_HEADERS for name, _ in connection.scope["headers"])


def metrics_guard(settings: Settings) -> Guard:
    """Admins, or a scraper on this box talking to the app directly."""
    admin = admin_guard(settings)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if bearer_token(connection) is None and is_direct_loopback(connection):
            return
        admin(connection, handler)

    return guard
