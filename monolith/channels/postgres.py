"""Pub/sub through PostgreSQL, woken by ``LISTEN/NOTIFY``: no polling.

The messages live in ``channel_messages`` exactly as with :mod:`monolith.channels.database`
(ids in commit order, replay after an id, trimming); what differs is how a reader learns that
there is something to read. A publisher's transaction ends with ``pg_notify`` on one
notification channel, which PostgreSQL delivers to every listening connection when (and only
if) the transaction commits. Each process keeps one connection of its own that ``LISTEN``s
and wakes its reader, which then reads the new rows. Between publishes a process runs no
query at all.

The notification carries no data (payloads are limited to 8000 bytes and are not kept): it
only says "read". A listening connection that drops is reopened with a backoff, and the reader
is woken once it listens again, so what was published meanwhile is read then.

Only this module (and the database backend) imports ``asyncpg``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import asyncpg
import structlog

from monolith.channels.database import DatabaseChannelsBackend
from monolith.database.base import Database, Transaction

log = structlog.get_logger("monolith.channels")

#: The one notification channel (per database: PostgreSQL's notifications do not cross them).
NOTIFY_CHANNEL = "monolith_events"


def _set(event: asyncio.Event, *args: object) -> None:
    del args
    event.set()


class PostgresChannelsBackend(DatabaseChannelsBackend):
    """:class:`DatabaseChannelsBackend` on PostgreSQL, woken by notifications."""

    def __init__(self, db: Database, url: str, **options: Any) -> None:
        super().__init__(db, **options)
        self.url = url
        self._listener: asyncio.Task[None] | None = None
        #: Set while the listening connection is open (for tests and diagnostics).
        self.listening = asyncio.Event()

    def describe(self) -> str:
        return f"through the database, LISTEN/NOTIFY: {self.db.describe()}"

    async def on_startup(self) -> None:
        await super().on_startup()
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="channels-listen")

    async def on_shutdown(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().on_shutdown()

    async def _announce(self, tx: Transaction) -> None:
        await tx.fetch_val("SELECT pg_notify(?, '')", (NOTIFY_CHANNEL,))

    def _notified(self, *args: object) -> None:
        del args
        if self._wake is not None:
            self._wake.set()

    async def _listen(self) -> None:
        failures = 0
        while True:
            lost = asyncio.Event()
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.url, timeout=10)
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                failures = 0
                self.listening.set()
                self._notified()  # read what was published while nobody listened
                await lost.wait()
                log.warning("pub/sub listening connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("pub/sub cannot listen; retrying", error=str(exc), failures=failures)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(min(5.0, 0.1 * 2**failures))

    async def _idle(self, wake: asyncio.Event, mark: int) -> None:
        del mark
        await wake.wait()
