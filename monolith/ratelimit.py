"""Rate limiting correct across processes: a fixed window per client on the store.

Each hit is one atomic :meth:`Store.hit_window` of ``<name>:<client>`` (an ``incr`` whose TTL
the first hit sets; on the disk store a shared-memory counter), so the window starts at a
client's first request and every worker (and box, on Redis) counts into the same number:
``limit`` requests are admitted per window, whichever process serves them. Litestar's
``RateLimitMiddleware`` reads, checks and writes under a process-local lock, which is why it
is not used.

This module must never keep the count itself in the process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monolith.config import RateLimit
from monolith.store.base import Store


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

    async def hit(self, client: str) -> Decision:
        """Count one request by ``client`` and say whether it is within the limit."""
        count, left = await self.store.hit_window(f"{self.name}:{client}", self.limit.period)
        return Decision(
            allowed=count <= self.limit.count,
            limit=self.limit.count,
            remaining=max(0, self.limit.count - count),
            reset=max(1, math.ceil(left)),
            period=self.limit.period,
        )
