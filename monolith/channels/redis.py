"""Pub/sub on Redis for scale-out: Litestar's ``RedisChannelsPubSubBackend``, namespaced.

What this adds to Litestar's backend: Redis pub/sub channel names are global to the server
(key prefixes do not apply to them), so every channel name is prefixed here, and two apps or
two test runs on one Redis never hear each other; driver errors on publish and subscribe
become :class:`~monolith.errors.StateUnavailable`; and the event stream survives a Redis
restart (redis-py reconnects and re-subscribes; the stream waits and retries meanwhile)
instead of ending and leaving the process's subscribers silent.

Redis pub/sub keeps no history: :meth:`get_history` raises ``NotImplementedError``, as
Litestar's does. Only this module imports ``redis``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import aclosing, contextmanager

import structlog
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.asyncio import Redis
from redis.exceptions import RedisError

from monolith.errors import StateUnavailable
from monolith.state import redact_url

log = structlog.get_logger("monolith.channels")


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise StateUnavailable(f"Redis pub/sub is unavailable: {exc}") from exc


class RedisChannelsBackend(RedisChannelsPubSubBackend):
    """Redis pub/sub with every channel name under ``prefix``."""

    supports_history = False
    scope = "shared"

    def __init__(self, url: str, *, prefix: str = "monolith:") -> None:
        # Building the client connects to nothing; the first command does.
        super().__init__(redis=Redis.from_url(url), key_prefix=prefix)
        self.prefix = prefix
        self.url = url

    def describe(self) -> str:
        return redact_url(self.url)

    async def ping(self) -> None:
        """Raise :class:`StateUnavailable` unless Redis answers (for ``doctor``)."""
        client = Redis.from_url(self.url, socket_connect_timeout=5)
        try:
            with _unavailable():
                await client.ping()
        finally:
            await client.aclose()

    def _names(self, channels: Iterable[str]) -> list[str]:
        return [self.prefix + c for c in channels]

    async def on_shutdown(self) -> None:
        try:
            await super().on_shutdown()
        finally:
            await self._redis.aclose()

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        with _unavailable():
            await super().publish(data, self._names(channels))

    async def subscribe(self, channels: Iterable[str]) -> None:
        with _unavailable():
            await super().subscribe(self._names(channels))

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        with _unavailable():
            await super().unsubscribe(self._names(channels))

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        failures = 0
        while True:
            try:
                async with aclosing(super().stream_events()) as events:
                    async for channel, data in events:
                        failures = 0
                        yield channel.removeprefix(self.prefix), data
            except RedisError as exc:
                failures += 1
                log.warning("redis pub/sub stream failed; retrying", error=str(exc))
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
