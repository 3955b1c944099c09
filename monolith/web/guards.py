"""Who may do what: the signed-in user, and the admin guard.

Admin means a signed-in user with the ``admin`` role, or ``Authorization: Bearer
$MONOLITH_ADMIN_TOKEN`` (compared in constant time). The role is read from the account (cached,
invalidated when it changes), never from the session, so a demotion takes effect at once. The
``/admin`` page may also be signed in with the token itself, which leaves a signed cookie of its
own (:mod:`monolith.web.admin_session`).

An admin request that changes something on the strength of a cookie (either kind) must also
carry ``X-Monolith-CSRF``: a custom header that a cross-site form or script cannot send without
a CORS preflight, which the app never grants. A bearer token needs no such header (browsers
never send one on their own).

``/metrics`` also admits a direct loopback client (Prometheus on the same box), but not one
that came through a proxy: Caddy connects from loopback too, and says so in its headers.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from monolith.accounts.cache import load_user
from monolith.accounts.model import User
from monolith.config import Settings
from monolith.services import Services
from monolith.sessions import COOKIE, Session
from monolith.web import admin_session

Guard = Any
Connection = ASGIConnection[Any, Any, Any, Any]
#: Where the rate-limit middleware leaves the session it already resolved.
SESSION_STATE = "monolith.session"
CSRF_HEADER = "x-monolith-csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(connection: Connection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin_token(settings: Settings, token: str | None) -> bool:
    expected = settings.security.admin_token
    return bool(expected and token and hmac.compare_digest(token.encode(), expected.encode()))


WRONG_CREDENTIALS = "wrong email or password"


async def start_session(svc: Services, request: Connection, user: User) -> str:
    """Sign ``user`` in; the ``Set-Cookie`` value of the new session.

    A new session at every login: never reuse one a client brought (session fixation).
    """
    await svc.sessions.destroy(request.cookies.get(COOKIE))
    return svc.sessions.set_cookie(await svc.sessions.create(user.id))


async def current_session(svc: Services, connection: Connection) -> Session | None:
    state = connection.scope.get("state") or {}
    if SESSION_STATE in state:
        session: Session | None = state[SESSION_STATE]
        return session
    return await svc.sessions.load(connection.cookies.get(COOKIE))


async def current_user(svc: Services, connection: Connection) -> User | None:
    session = await current_session(svc, connection)
    return None if session is None else await load_user(svc, session.user_id)


async def require_user(svc: Services, connection: Connection) -> User:
    user = await current_user(svc, connection)
    if user is None:
        raise NotAuthorizedException(detail="sign in first")
    return user


async def admin_credential(svc: Services, connection: Connection) -> Literal["token", "cookie"]:
    """How ``connection`` shows it is an admin: the bearer token, or a cookie.

    Raises 401 when it shows nothing, 403 for a wrong token or a signed-in user who is not an
    admin. A bearer token, right or wrong, is the only credential looked at when present.
    """
    token = bearer_token(connection)
    if token is not None:
        if is_admin_token(svc.settings, token):
            return "token"
        raise PermissionDeniedException(detail="admin only")
    user = await current_user(svc, connection)
    if user is not None and user.role == "admin":
        return "cookie"
    if admin_session.valid(svc.settings, connection.cookies.get(admin_session.COOKIE)):
        return "cookie"
    if user is not None:
        raise PermissionDeniedException(detail="admin only")
    raise NotAuthorizedException(detail="sign in as an admin or send the admin token")


def admin_guard(svc: Services) -> Guard:
    """A Litestar guard admitting only admins (and cookie changes only with the CSRF header)."""

    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        if await admin_credential(svc, connection) == "token":
            return
        method = connection.scope.get("method", "GET")
        if method not in _SAFE_METHODS and not connection.headers.get(CSRF_HEADER):
            raise PermissionDeniedException(
                detail=f"a change made with a cookie needs the {CSRF_HEADER} header"
            )

    return guard


_PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def is_direct_loopback(connection: Connection) -> bool:
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


def metrics_guard(svc: Services) -> Guard:
    """Admins, or a scraper on this box talking to the app directly."""
    admin = admin_guard(svc)

    async def guard(connection: Connection, handler: BaseRouteHandler) -> None:
        if bearer_token(connection) is None and is_direct_loopback(connection):
            return
        await admin(connection, handler)

    return guard
