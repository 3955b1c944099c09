"""Who may do what: the signed-in user, and the admin guard.

Admin means a signed-in user with the ``admin`` role, or ``Authorization: Bearer
$MONOLITH_ADMIN_TOKEN`` (compared in constant time). The role is read from the account (cached,
invalidated when it changes), never from the session, so a demotion takes effect at once.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from monolith.accounts import User, load_user
from monolith.config import Settings
from monolith.services import Services
from monolith.sessions import COOKIE, Session

Guard = Any
Connection = ASGIConnection[Any, Any, Any, Any]
#: Where the rate-limit middleware leaves the session it already resolved.
SESSION_STATE = "monolith.session"


def bearer_token(connection: Connection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin_token(settings: Settings, token: str | None) -> bool:
    expected = settings.security.admin_token
    return bool(expected and token and hmac.compare_digest(token.encode(), expected.encode()))


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


def admin_guard(svc: Services) -> Guard:
    """A Litestar guard admitting only admins."""

    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        token = bearer_token(connection)
        if is_admin_token(svc.settings, token):
            return
        user = None if token is not None else await current_user(svc, connection)
        if user is not None and user.role == "admin":
            return
        if user is None and token is None:
            raise NotAuthorizedException(detail="sign in as an admin or send the admin token")
        raise PermissionDeniedException(detail="admin only")

    return guard
