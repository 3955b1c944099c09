"""Pub/sub through the database: a table that publishers append to and subscribers poll.

In the spirit of Rails' Solid Cable: every worker process of the box (and every box, on
PostgreSQL) polls ``channel_messages`` for rows past the last id it has seen, so an event
published by any process reaches the subscribers of every process, with nothing to run but the
database the app already has. It is written on the :class:`~monolith.db.Database` interface
only, so the same class serves SQLite and PostgreSQL.

Why ids come from ``channel_head`` and not from an autoincrement: a poller that asks for
"id > last seen" must never see id 7 commit before id 6, or it skips 6 for good. On PostgreSQL
a sequence hands out 6 and 7 to two transactions that may commit in either order. Taking the
next id by updating the one row of ``channel_head`` holds that row's lock until commit, so
publishers commit in id order (SQLite writers are serialized anyway). Publishing is rare next
to reading, so serializing it costs nothing we would notice. (An event published in a write's
own transaction, :meth:`publish_in`, holds that lock until the write commits.)

Delivery: a subscriber receives the messages of its channels that commit after it subscribed,
in commit order, within one poll interval (at once for messages published by this process,
which wake the poller). Rows older than ``retention`` seconds are trimmed by publishers; a
poller that falls further behind than that loses what was trimmed. Publishing happens inside a
caller's transaction only when asked (:meth:`publish_in`, ``EventHub.publish(..., tx=)``): then
the event is sent if and only if that write commits, at the cost of no write of its own.

This module must never import a database driver, nor raise a driver's error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable

import structlog
from litestar.channels.backends.base import ChannelsBackend

from monolith.database.base import Database, Transaction
from monolith.errors import NotStarted, StateUnavailable

log = structlog.get_logger("monolith.channels")

_HEAD = "SELECT last_id FROM channel_head WHERE id = 1"


class DatabaseChannelsBackend(ChannelsBackend):
    """A :class:`ChannelsBackend` on a :class:`Database`; see the module docstring."""

    #: History is the last ``history`` messages of a channel that are younger than ``retention``.
    supports_history = True

    @property
    def scope(self) -> str:
        """Who hears a message: ``"box"`` on SQLite, ``"shared"`` on PostgreSQL (for ``doctor``)."""
        return self.db.scope

    def describe(self) -> str:
        return f"through the database: {self.db.describe()}"

    def __init__(
        self,
        db: Database,
        *,
        history: int = 10,
        retention: float = 300.0,
        poll_interval: float = 0.1,
        batch: int = 500,
        trim_every: float = 10.0,
    ) -> None:
        self.db = db
        self.history = history
        self.retention = retention
        self.poll_interval = poll_interval
        self.batch = batch
        self.trim_every = trim_every
        # channel -> the head id when it was subscribed: older messages are not delivered.
        self._since: dict[str, int] = {}
        self._cursor = 0
        self._last_trim = 0.0
        self._wake: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def on_startup(self) -> None:
        # No query here: the app starts components before it applies migrations. The read
        # position is taken when the first channel is subscribed.
        self._wake = asyncio.Event()
        self._cursor = 0

    async def on_shutdown(self) -> None:
        self._since.clear()
        if self._wake is not None:
            self._wake.set()  # a poller waiting for subscriptions re-checks and keeps waiting
        self._wake = None

    def _require_wake(self) -> asyncio.Event:
        if self._wake is None:
            raise NotStarted("DatabaseChannelsBackend used before on_startup()")
        return self._wake

    async def _head(self) -> int:
        return int(await self.db.fetch_val(_HEAD) or 0)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        """Append ``data`` once per channel; returns when the rows are durable."""
        wake = self._require_wake()
        names = list(dict.fromkeys(channels))
        if not names:
            return
        async with self.db.transaction() as tx:
            await self._append(tx, data, names)
        wake.set()

    async def publish_in(self, tx: Transaction, data: bytes, channels: Iterable[str]) -> None:
        """Append ``data`` once per channel inside the caller's transaction ``tx`` (on this
        backend's database): delivered if and only if ``tx`` commits, and no write of its own.
        """
        wake = self._require_wake()
        names = list(dict.fromkeys(channels))
        if names:
            await self._append(tx, data, names)
            tx.on_commit(wake.set)

    async def _append(self, tx: Transaction, data: bytes, names: list[str]) -> None:
        now = time.time()
        last = int(
            await tx.fetch_val(
                "UPDATE channel_head SET last_id = last_id + ? WHERE id = 1 RETURNING last_id",
                (len(names),),
            )
        )
        first = last - len(names) + 1
        await tx.execute_many(
            "INSERT INTO channel_messages (id, channel, payload, created_at) VALUES (?, ?, ?, ?)",
            [(first + i, name, bytes(data), now) for i, name in enumerate(names)],
        )
        if now - self._last_trim >= self.trim_every:
            self._last_trim = now
            await tx.execute(
                "DELETE FROM channel_messages WHERE created_at < ?", (now - self.retention,)
            )

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, channels: Iterable[str]) -> None:
        wake = self._require_wake()
        new = [c for c in channels if c not in self._since]
        if not new:
            return
        head = await self._head()
        if not self._since:
            # Nobody was listening, so nothing past the cursor is wanted: skip ahead.
            self._cursor = max(self._cursor, head)
        for channel in new:
            self._since[channel] = head
        wake.set()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._since.pop(channel, None)

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        """Messages of the subscribed channels, in commit order, until ``on_shutdown``.

        One consumer per backend instance (the process's fan-out): the read position is shared.

        A database that is down or busy is logged and retried, never raised: the generator
        feeds every subscriber of the process and must outlive an outage.
        """
        failures = 0
        while (wake := self._wake) is not None:
            if not self._since:
                wake.clear()
                await wake.wait()
                continue
            # Cleared before reading: a publish that lands during the read wakes the next wait.
            wake.clear()
            try:
                rows = await self.db.fetch_all(
                    "SELECT id, channel, payload FROM channel_messages "
                    "WHERE id > ? ORDER BY id LIMIT ?",
                    (self._cursor, self.batch),
                )
            except StateUnavailable as exc:
                failures += 1
                log.warning("channels poll failed; retrying", error=str(exc), failures=failures)
                await asyncio.sleep(min(5.0, self.poll_interval * 2**failures))
                continue
            failures = 0
            for row in rows:
                self._cursor = message_id = int(row[0])
                channel = row[1]
                since = self._since.get(channel)
                if since is not None and message_id > since:
                    yield channel, bytes(row[2])
            if len(rows) < self.batch:
                try:
                    async with asyncio.timeout(self.poll_interval):
                        await wake.wait()
                except TimeoutError:
                    pass

    async def get_history(self, channel: str, limit: int | None = None) -> list[bytes]:
        """The newest ``limit`` (at most ``history``) retained messages of ``channel``."""
        count = self.history if limit is None else min(limit, self.history)
        if count <= 0:
            return []
        rows = await self.db.fetch_all(
            "SELECT payload FROM (SELECT id, payload FROM channel_messages WHERE channel = ? "
            "AND created_at >= ? ORDER BY id DESC LIMIT ?) AS recent ORDER BY id",
            (channel, time.time() - self.retention, count),
        )
        return [bytes(row[0]) for row in rows]
