"""Rate limiting every ``/api`` request, correct across workers (``MONOLITH_RATE_LIMITS``).

A raw ASGI layer outside Litestar (and outside the fast path of ``web/fastpath.py``), inside
only the request context, so a refused request still has its request id, access line and
count: it runs on every request, and its usual cost is one :meth:`Store.hit_window` (shared
memory on the disk store) plus a few microseconds here. The client is computed once per request
and kept in the scope for the access line.

The ``api`` limit applies to every ``/api`` route; ``login``, ``signup`` and ``orders`` apply
to their own route as well (``login`` also to the ``/admin`` page's sign-in, which
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
from collections.abc import Awaitable
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from monolith.errors import StateUnavailable
from monolith.ratelimit import RateLimiter
from monolith.services import Services
from monolith.sessions import cookie_from_header
from monolith.web.client_ip import scope_client_ip
from monolith.web.guards import SESSION_STATE
from monolith.web.middleware import RESPONSE_HEADERS

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
        # Which limiters apply to an /api request with no route limit of its own (the usual case).
        self.api = [self.limiters["api"]] if "api" in self.limiters else []

    # The scope is typed Any on this hot path: Litestar's TypedDict unions cost casts, not time.
    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route = ROUTE_LIMITS.get((scope["method"], path))
        if route is None:
            if not self.api or not path.startswith("/api/"):
                await self.app(scope, receive, send)
                return
            limiters = self.api
        else:
            names = ["api", route] if path.startswith("/api/") else [route]
            limiters = [self.limiters[n] for n in names if n in self.limiters]
            if not limiters:
                await self.app(scope, receive, send)
                return
        try:
            found = self._client(scope)
            client = found if isinstance(found, str) else await found
            decisions = []
            for limiter in limiters:
                decision = limiter.hit_now(client)  # shared memory: no await
                decisions.append(decision if decision is not None else await limiter.hit(client))
        except StateUnavailable as exc:
            # The limiter counts per process while the store is away; this is a last resort,
            # and like every 503 it names no host.
            await send_error(
                send,
                503,
                "service temporarily unavailable: the rate limiter cannot count",
                [("Retry-After", str(exc.retry_after))],
            )
            return
        if len(decisions) == 1:
            shown = decisions[0]
            refused = not shown.allowed
        else:
            blocked = [d for d in decisions if not d.allowed]
            refused = bool(blocked)
            shown = (
                max(blocked, key=lambda d: d.reset)
                if blocked
                else min(decisions, key=lambda d: d.remaining)
            )
        if refused:
            detail = (
                f"rate limit exceeded: {shown.limit} per {shown.period}s; retry in {shown.reset}s"
            )
            await send_error(send, 429, detail, shown.headers())
            return
        extra = [
            (b"ratelimit-limit", b"%d" % shown.limit),
            (b"ratelimit-remaining", b"%d" % shown.remaining),
            (b"ratelimit-reset", b"%d" % shown.reset),
            (b"ratelimit-policy", b"%d;w=%d" % (shown.limit, shown.period)),
        ]
        scope[RESPONSE_HEADERS].extend(extra)  # the request context (outside) sends them
        await self.app(scope, receive, send)

    def _client(self, scope: Scope) -> Awaitable[str] | str:
        """The signed-in user or the address; a coroutine only when a cookie must be read."""
        for name, value in scope["headers"]:
            if name == b"cookie":
                return self._session_client(scope, value)
        return "ip:" + scope_client_ip(scope, self.trusted)

    async def _session_client(self, scope: Scope, header: bytes) -> str:
        cookie = cookie_from_header(header.decode("latin-1"))
        if cookie is not None:
            try:
                session = await self.svc.sessions.load(cookie)
            except StateUnavailable:
                session = None  # the store is away: counted by address; routes decide
            else:
                scope.setdefault("state", {})[SESSION_STATE] = session
            if session is not None:
                return f"user:{session.user_id}"
        return "ip:" + scope_client_ip(scope, self.trusted)


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
