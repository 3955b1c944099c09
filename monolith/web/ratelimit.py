"""Rate limiting every ``/api`` request, correct across workers (``MONOLITH_RATE_LIMITS``).

Raw ASGI because it runs on every API request: the usual cost is one ``incr`` in the shared
store. The ``api`` limit applies to every ``/api`` route; ``login``, ``signup`` and ``orders``
apply to their own route as well (``login`` also to the ``/admin`` page's sign-in, which
shares its budget with ``POST /api/auth/login``). A limit of ``0`` turns that limit off.

The client is the signed-in user when the request carries a valid session (so people behind
one NAT do not share a budget), else its IP address as :func:`monolith.web.client_ip.client_ip`
reads it (``X-Forwarded-For`` only from trusted proxies).

Refused requests get 429 with ``Retry-After``; every limited response carries ``RateLimit-*``
headers. A store that is down neither opens the limits nor closes the API: the limiter counts
per process until the store is back (:class:`monolith.ratelimit.RateLimiter`), and a session
that cannot be read leaves the client known by its address (the route, if it needs the
session, answers 503 itself).
"""

from __future__ import annotations

import json
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from monolith.errors import StateUnavailable
from monolith.ratelimit import RateLimiter
from monolith.services import Services
from monolith.sessions import cookie_from_header
from monolith.web.client_ip import client_ip
from monolith.web.guards import SESSION_STATE

#: (method, path) -> the route's own limit, on top of ``api``.
ROUTE_LIMITS = {
    ("POST", "/api/auth/login"): "login",
    ("POST", "/api/auth/signup"): "signup",
    ("POST", "/api/orders"): "orders",
    ("POST", "/admin/login"): "login",
}


def limiters(svc: Services) -> dict[str, RateLimiter]:
    """One limiter per configured limit, shared by every route of the process (Litestar
    builds a middleware per route: the per-process fallback must count in one place)."""
    store = svc.store.with_namespace("ratelimit")
    return {
        name: RateLimiter(store, name, limit, metrics=svc.metrics)
        for name, limit in svc.settings.security.rate_limits.items()
        if limit.count > 0
    }


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, svc: Services, shared: dict[str, RateLimiter] | None = None
    ) -> None:
        self.app = app
        self.svc = svc
        self.limiters = limiters(svc) if shared is None else shared
        self.trusted = svc.settings.server.trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]
        path: str = scope.get("path", "")
        if kind != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]  # type: ignore[typeddict-item]
        route = ROUTE_LIMITS.get((method, path))
        names = ["api"] if path.startswith("/api/") else []
        if route is not None:
            names.append(route)
        if not names:
            await self.app(scope, receive, send)
            return
        limiters = [self.limiters[n] for n in names if n in self.limiters]
        client = await self._client(scope)
        decisions = [await limiter.hit(client) for limiter in limiters]
        if not decisions:
            await self.app(scope, receive, send)
            return
        refused = [d for d in decisions if not d.allowed]
        shown = (
            max(refused, key=lambda d: d.reset)
            if refused
            else min(decisions, key=lambda d: d.remaining)
        )
        if refused:
            detail = (
                f"rate limit exceeded: {shown.limit} per {shown.period}s; retry in {shown.reset}s"
            )
            await send_error(send, 429, detail, shown.headers())
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in shown.headers()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _client(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = cookie_from_header(value.decode("latin-1"))
                if cookie is not None:
                    try:
                        session = await self.svc.sessions.load(cookie)
                    except StateUnavailable:
                        break  # the store is away: counted by address; routes decide
                    scope.setdefault("state", {})[SESSION_STATE] = session
                    if session is not None:
                        return f"user:{session.user_id}"
                break
        return "ip:" + client_ip(scope, self.trusted)


async def send_error(send: Send, status: int, detail: str, headers: list[tuple[str, str]]) -> None:
    """An error response from raw ASGI middleware, shaped as every other error."""
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def rate_limit_middleware(svc: Services) -> Any:
    """The middleware factory ``create_app`` puts in Litestar's middleware list."""

    shared = limiters(svc)

    def build(app: ASGIApp) -> RateLimitMiddleware:
        return RateLimitMiddleware(app, svc, shared)

    return build
