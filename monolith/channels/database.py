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
in commit order. Messages published by this process wake the reader at once. Messages of other
processes: on SQLite, the reader looks every ``poll_interval`` at a change counter in the box's
shared memory (:mod:`monolith.channels.signal`) and queries only when it moved, so an idle box
runs no query; on PostgreSQL, :mod:`monolith.channels.postgres` is woken by ``LISTEN/NOTIFY``
and never polls.

Every message keeps its row id, which is also its event id (``Last-Event-ID``): :meth:`replay`
gives the messages after an id while they are kept. Rows older than ``retention`` seconds
(``MONOLITH_EVENTS_KEEP``) are trimmed by publishers, a bounded batch at a time, and
``channel_head.trimmed_id`` remembers the last id trimmed, so a replay knows when what it was
asked for is gone. :meth:`publish_in`
writes the rows in a caller's transaction: the message exists exactly when the change does.

This module must never import a database driver, nor raise a driver's error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable

import structlog
from litestar.channels.backends.base import ChannelsBackend

from monolith.channels.message import Message, Replay
from monolith.channels.signal import ChangeSignal
from monolith.database.base import Database, Transaction
from monolith.errors import NotStarted, StateUnavailable

log = structlog.get_logger("monolith.channels")

_HEAD = "SELECT last_id FROM channel_head WHERE id = 1"
#: The most messages one trim deletes (see :meth:`DatabaseChannelsBackend._trim`).
TRIM_BATCH = 500


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
        retention: float = 600.0,
        poll_interval: float = 0.1,
        batch: int = 500,
        trim_every: float = 10.0,
        signal: ChangeSignal | None = None,
        replay_limit: int = 10_000,
    ) -> None:
        self.db = db
        self.signal = signal
        self.replay_limit = replay_limit
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
        if self.signal is not None:
            self.signal.close()
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
        self._require_wake()
        async with self.db.transaction() as tx:
            await self.publish_in(tx, data, channels)

    async def publish_in(self, tx: Transaction, data: bytes, channels: Iterable[str]) -> None:
        """Append ``data`` once per channel inside ``tx``: delivered if and when it commits.

        Taking the id locks ``channel_head`` until ``tx`` commits (that is what keeps ids in
        commit order), so call this last in the transaction.
        """
        self._require_wake()
        names = list(dict.fromkeys(channels))
        if not names:
            return
        now = time.time()
        if now - self._last_trim >= self.trim_every:
            self._last_trim = now
            await self._trim(tx, now - self.retention)
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
        await self._announce(tx)
        tx.on_commit(self._committed)

    async def _trim(self, tx: Transaction, cutoff: float) -> None:
        """Delete the oldest messages past ``cutoff``, at most :data:`TRIM_BATCH` of them.

        This runs inside a publisher's transaction, which holds the database's write lock
        (every other write of the box waits on it): each trim is kept short. When a whole
        batch went, more may be due, and the next publish trims again. Measured: under a
        steady order load, the messages of ten seconds aged out together (~20,000), and
        deleting them in one go held every writer for long enough to put seconds into the
        order POST's p99.
        """
        edge = await tx.fetch_val(
            "SELECT MAX(id) FROM (SELECT id FROM channel_messages WHERE created_at < ? "
            "ORDER BY created_at LIMIT ?) AS aged",
            (cutoff, TRIM_BATCH),
        )
        if edge is None:
            return
        deleted = await tx.execute("DELETE FROM channel_messages WHERE id <= ?", (int(edge),))
        if deleted >= TRIM_BATCH:
            self._last_trim = 0.0  # more may be due: the next publish trims again
        await tx.execute(
            "UPDATE channel_head SET trimmed_id = ? WHERE id = 1 AND trimmed_id < ?",
            (int(edge), int(edge)),
        )

    async def _announce(self, tx: Transaction) -> None:
        """Tell other processes, as part of ``tx`` (PostgreSQL: ``NOTIFY``). SQLite: nothing
        here; the change counter moves after the commit."""
        del tx

    def _committed(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self.signal is not None:
            self.signal.bump()

    async def replay(self, channels: Iterable[str], after: str) -> Replay:
        """The messages of ``channels`` after the id ``after``, or ``complete=False`` when some
        of them are no longer kept (or ``after`` is not an id this log gave out)."""
        names = sorted(set(channels))
        marks = ", ".join("?" * len(names))
        try:
            since = int(after)
        except ValueError:
            since = -1
        rows = []
        if since >= 0 and names:
            rows = await self.db.fetch_all(
                f"SELECT id, channel, payload FROM channel_messages WHERE id > ? "
                f"AND channel IN ({marks}) ORDER BY id LIMIT ?",
                (since, *names, self.replay_limit),
            )
        head = await self.db.fetch_one("SELECT last_id, trimmed_id FROM channel_head WHERE id = 1")
        last, trimmed = (int(head[0]), int(head[1])) if head is not None else (0, 0)
        complete = trimmed <= since <= last and len(rows) < self.replay_limit
        messages = [Message(str(r[0]), r[1], bytes(r[2])) for r in rows] if complete else []
        return Replay(messages, complete, str(last))

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
        """Messages of the subscribed channels, in commit order, until ``on_shutdown``."""
        async for message in self.stream_messages():
            yield message.channel, message.data

    async def stream_messages(self) -> AsyncGenerator[Message, None]:
        """Messages of the subscribed channels with their ids, in commit order.

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
            mark = self.signal.value() if self.signal is not None else 0
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
                    yield Message(str(message_id), channel, bytes(row[2]))
            if len(rows) < self.batch:
                await self._idle(wake, mark)

    async def _idle(self, wake: asyncio.Event, mark: int) -> None:
        """Wait until something may have been published: this process woke ``wake``, or the
        box's change counter moved past ``mark``. Without a counter, one poll interval."""
        while True:
            try:
                async with asyncio.timeout(self.poll_interval):
                    await wake.wait()
                return
            except TimeoutError:
                if self.signal is None or self.signal.value() != mark:
                    return

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
