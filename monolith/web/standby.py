"""On a warm standby, the app serves reads only: every other method is a 503 that says why.

The copy under a standby is replaced from the replica every few seconds, so a write here would
be lost at the next round, and would fork the data from the primary's. Raw ASGI, before the
rate limiter: a refused write costs nothing and touches no store.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

from monolith.web.ratelimit import send_error

#: Methods that change nothing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSAL = (
    "standby mode: this box serves a read-only copy of the primary's database; send writes "
    "to the primary (monolith promote makes this box the primary)"
)


class StandbyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]
        if kind == "http" and scope["method"] not in SAFE_METHODS:  # type: ignore[typeddict-item]
            await send_error(send, 503, REFUSAL, [("Retry-After", "30")])
            return
        await self.app(scope, receive, send)


def standby_middleware() -> Any:
    """The middleware factory ``create_app`` puts first in Litestar's list on a standby."""

    def build(app: ASGIApp) -> StandbyGuard:
        return StandbyGuard(app)

    return build
