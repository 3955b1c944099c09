"""Pub/sub on Redis for scale-out: Litestar's ``RedisChannelsPubSubBackend``, namespaced.

What this adds to Litestar's backend: Redis pub/sub channel names are global to the server
(key prefixes do not apply to them), so every channel name is prefixed here, and two apps or
two test runs on one Redis never hear each other; driver errors on publish and subscribe
become :class:`~monolith.errors.StateUnavailable`; and the event stream survives a Redis
restart (redis-py reconnects and re-subscribes; the stream waits and retries meanwhile)
instead of ending and leaving the process's subscribers silent.

Ids and replay: a publish appends the message to a Redis stream (``<prefix>events``, entries
older than ``keep`` seconds trimmed as it goes), then publishes ``<stream id>\n<data>`` on the
channel. Two publishers racing may deliver live in the other order than their ids (a Lua
script doing both atomically was measured to stall order requests under load, so it was not
kept); a replay is always in id order, and clients drop an id they already had.
A reconnecting client's ``Last-Event-ID`` is a stream id, and
:meth:`replay` reads the stream after it (``XRANGE``); when the stream's oldest entry is
younger than that id, something was trimmed and the client starts over.

Redis pub/sub keeps no history of its own: :meth:`get_history` raises ``NotImplementedError``,
as Litestar's does. Only this module imports ``redis``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import structlog
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from monolith.channels.message import Message, Replay, pack, unpack
from monolith.errors import StateUnavailable
from monolith.state import redact_url

log = structlog.get_logger("monolith.channels")

_STREAM_ID = re.compile(r"(\d+)-(\d+)")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(stream_id: str) -> tuple[int, int] | None:
    match = _STREAM_ID.fullmatch(stream_id)
    return None if match is None else (int(match[1]), int(match[2]))


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

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "monolith:",
        keep: float = 600.0,
        replay_limit: int = 10_000,
    ) -> None:
        # Building the client connects to nothing; the first command does. Publishes beyond the
        # pool's connections wait for one (up to 5 s) rather than fail with "Too many
        # connections", as redis-py's default pool does past 100.
        pool = BlockingConnectionPool.from_url(url, max_connections=100, timeout=5)
        super().__init__(redis=Redis(connection_pool=pool), key_prefix=prefix)
        self.prefix = prefix
        self.url = url
        self.keep = keep
        self.replay_limit = replay_limit
        self.stream = f"{prefix}events"

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
            await self._redis.aclose(close_connection_pool=True)  # the pool is ours

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        names = list(dict.fromkeys(channels))
        if not names:
            return
        oldest = int((time.time() - self.keep) * 1000)
        with _unavailable():
            for name in names:
                entry = await self._redis.xadd(
                    self.stream, {"c": name, "d": bytes(data)}, minid=oldest, approximate=True
                )
                await self._redis.publish(self.prefix + name, pack(_text(entry), data))

    async def replay(self, channels: Iterable[str], after: str) -> Replay:
        wanted = {name.encode() for name in channels}
        since = _order(after)
        # Stream entries as redis-py returns them: (id, {field: value}), bytes throughout.
        entries: list[Any] = []
        with _unavailable():
            if since is not None:
                entries = list(
                    await self._redis.xrange(self.stream, f"({after}", "+", count=self.replay_limit)
                    or []
                )
            first: list[Any] = list(await self._redis.xrange(self.stream, "-", "+", count=1) or [])
            last: list[Any] = list(
                await self._redis.xrevrange(self.stream, "+", "-", count=1) or []
            )
        head = _text(last[0][0]) if last else ""
        oldest = _order(_text(first[0][0])) if first else None
        newest = _order(head) if head else None
        complete = (
            since is not None
            and oldest is not None
            and newest is not None
            and oldest <= since <= newest
            and len(entries) < self.replay_limit
        )
        messages = [
            Message(_text(entry_id), _text(fields[b"c"]), fields[b"d"])
            for entry_id, fields in entries
            if fields[b"c"] in wanted
        ]
        return Replay(messages if complete else [], complete, head)

    async def subscribe(self, channels: Iterable[str]) -> None:
        with _unavailable():
            await super().subscribe(self._names(channels))

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        with _unavailable():
            await super().unsubscribe(self._names(channels))

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        async for message in self.stream_messages():
            yield message.channel, message.data

    async def stream_messages(self) -> AsyncGenerator[Message, None]:
        failures = 0
        while True:
            try:
                async with aclosing(super().stream_events()) as events:
                    async for channel, wire in events:
                        failures = 0
                        yield unpack(channel.removeprefix(self.prefix), wire)
            except RedisError as exc:
                failures += 1
                log.warning("redis pub/sub stream failed; retrying", error=str(exc))
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
