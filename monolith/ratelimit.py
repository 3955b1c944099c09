"""Rate limiting correct across processes: a fixed window per client on :meth:`Store.incr`.

Each hit is one atomic ``incr`` of ``<name>:<client>`` whose TTL is set by the hit that
creates it, so the window starts at a client's first request and every worker (and box, on
Redis) counts into the same number: ``limit`` requests are admitted per window, whichever
process serves them. Litestar's ``RateLimitMiddleware`` reads, checks and writes under a
process-local lock, which is why it is not used.

``RateLimit-Reset`` needs the window's end. The process that opens a window knows it; others
ask the store once per window and remember the answer, so the usual hit is one round trip.

This module must never keep the count itself in the process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from monolith.config import RateLimit
from monolith.store.base import Store

_MEMO_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: Whole seconds until the window ends.
    reset: int
    period: int

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-*`` (IETF draft) on every response; ``Retry-After`` when refused."""
        headers = [
            ("RateLimit-Limit", str(self.limit)),
            ("RateLimit-Remaining", str(self.remaining)),
            ("RateLimit-Reset", str(self.reset)),
            ("RateLimit-Policy", f"{self.limit};w={self.period}"),
        ]
        if not self.allowed:
            headers.append(("Retry-After", str(self.reset)))
        return headers


class RateLimiter:
    """``limit.count`` hits per ``limit.period`` seconds per client, under the name ``name``."""

    def __init__(self, store: Store, name: str, limit: RateLimit) -> None:
        self.store = store
        self.name = name
        self.limit = limit
        self._ends: dict[str, float] = {}  # key -> monotonic end of its current window

    async def hit(self, client: str) -> Decision:
        """Count one request by ``client`` and say whether it is within the limit."""
        key = f"{self.name}:{client}"
        period = self.limit.period
        count = await self.store.incr(key, 1, expires_in=period)
        now = time.monotonic()
        end = self._ends.get(key)
        if count == 1 or end is None or end <= now:
            left = period if count == 1 else await self.store.expires_in(key)
            end = now + (period if left is None else left)
            if len(self._ends) >= _MEMO_MAX:
                self._ends.clear()
            self._ends[key] = end
        return Decision(
            allowed=count <= self.limit.count,
            limit=self.limit.count,
            remaining=max(0, self.limit.count - count),
            reset=max(1, math.ceil(end - now)),
            period=period,
        )

    async def reset(self, client: str) -> None:
        """Forget a client's window (e.g. after a successful login, for the login limit)."""
        key = f"{self.name}:{client}"
        self._ends.pop(key, None)
        await self.store.delete(key)
