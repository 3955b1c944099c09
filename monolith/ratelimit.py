"""Rate limiting correct across processes: a fixed window per client on the store.

Each hit is one atomic :meth:`Store.hit_window` of ``<name>:<client>`` (an ``incr`` whose TTL
the first hit sets; on the disk store a shared-memory counter), so the window starts at a
client's first request and every worker (and box, on Redis) counts into the same number:
``limit`` requests are admitted per window, whichever process serves them. Litestar's
``RateLimitMiddleware`` reads, checks and writes under a process-local lock, which is why it
is not used.

When the store is unavailable (Redis down, a full disk), the limiter does not fail closed:
every read would then be a 503 although the database is fine. It counts in the process
instead, with the same limit per process (so a limit of N becomes N per worker while the
store is away, and a password guesser still meets a limit), logs that once per outage, and
counts each such decision in ``monolith_ratelimit_fallbacks_total`` (shown on ``/admin``).
The first hit after the store answers again goes back to the shared count.

This module must never keep the count itself in the process while the store answers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from monolith.config import RateLimit
from monolith.errors import StateUnavailable
from monolith.logs import get_logger
from monolith.observability.metrics import Metrics
from monolith.store.base import Store

log = get_logger("monolith.ratelimit")

#: Windows the per-process fallback keeps at most (a flood of clients cannot grow it further).
LOCAL_WINDOWS = 10_000


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


class LocalWindows:
    """Fixed windows counted in this process: the fallback while the store is unavailable."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, period: int, now: float) -> tuple[int, float]:
        start, count = self._windows.get(key, (now, 0))
        if now >= start + period:
            start, count = now, 0
        if key not in self._windows and len(self._windows) >= LOCAL_WINDOWS:
            self._windows = {k: v for k, v in self._windows.items() if now < v[0] + period}
            if len(self._windows) >= LOCAL_WINDOWS:
                self._windows.clear()
        self._windows[key] = (start, count + 1)
        return count + 1, start + period - now


class RateLimiter:
    """``limit.count`` hits per ``limit.period`` seconds per client, under the name ``name``.

    ``metrics`` (optional) counts the decisions taken per process while the store is away.
    """

    def __init__(
        self, store: Store, name: str, limit: RateLimit, *, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.name = name
        self.limit = limit
        self.metrics = metrics
        self.local = LocalWindows()
        #: True while the last hit could not reach the store.
        self.degraded = False

    def hit_now(self, client: str) -> Decision | None:
        """:meth:`hit` without awaiting, when the store counts on this box (shared memory);
        None: call :meth:`hit`."""
        if self.degraded:
            return None
        try:
            counted = self.store.hit_window_now(f"{self.name}:{client}", self.limit.period)
        except StateUnavailable:
            return None  # hit() counts it, and says so
        return None if counted is None else self._decision(*counted)

    async def hit(self, client: str) -> Decision:
        """Count one request by ``client`` and say whether it is within the limit."""
        key = f"{self.name}:{client}"
        try:
            count, left = await self.store.hit_window(key, self.limit.period)
        except StateUnavailable as exc:
            count, left = self._fallback(key, exc)
        else:
            if self.degraded:
                self.degraded = False
                log.info("rate limit counted in the store again", limit=self.name)
        return self._decision(count, left)

    def _decision(self, count: int, left: float) -> Decision:
        return Decision(
            allowed=count <= self.limit.count,
            limit=self.limit.count,
            remaining=max(0, self.limit.count - count),
            reset=max(1, math.ceil(left)),
            period=self.limit.period,
        )

    def _fallback(self, key: str, exc: StateUnavailable) -> tuple[int, float]:
        if not self.degraded:
            self.degraded = True
            log.warning(
                "rate limit counted per process: the store is unavailable",
                limit=self.name,
                error=str(exc),
            )
        if self.metrics is not None:
            self.metrics.ratelimit_fallbacks.labels(self.name).inc()
        return self.local.hit(key, self.limit.period, time.monotonic())
