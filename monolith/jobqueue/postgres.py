"""The job queue on PostgreSQL: several processes on several boxes share one queue.

Claims select with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take different rows
without waiting on each other. Claims that enforce per-name concurrency caps first take a
transaction-level advisory lock, because counting running jobs and claiming more must not
interleave between two claimers (under READ COMMITTED both would see the same count).

Wake-ups are ``LISTEN``/``NOTIFY``: the notification is sent inside the enqueuing transaction,
so PostgreSQL delivers it at commit and never for a rolled-back job, to listeners on any box.
The election is a session-level advisory lock on a dedicated connection: PostgreSQL drops it
when that connection ends, including when its process is killed or its box disappears (after
TCP keepalive notices). This module is the only one of the queue that imports asyncpg.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg

from monolith.database.base import Database, Transaction
from monolith.jobqueue.base import JobQueue
from monolith.jobqueue.coordination import Election, WakeSignal, Wakeup
from monolith.state import redact_url

CHANNEL = "monolith_jobs"
_LEADER_LOCK = 0x6D6F6E6A  # "monj": the job runner's leadership
_CLAIM_LOCK = 0x6D6F6E63  # "monc": claims that count running jobs per name


def _url(db: Database) -> str:
    """A direct connection's URL (never PgBouncer's: LISTEN and the lock need a session)."""
    url = getattr(db, "direct_url", None) or getattr(db, "url", None)
    if not isinstance(url, str):
        raise TypeError("the PostgreSQL job queue needs a PostgreSQL database")
    return url


class NotifyWakeup(Wakeup):
    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self._signal = WakeSignal()

    async def announce(self, tx: Transaction) -> None:
        await tx.execute(f"SELECT pg_notify('{CHANNEL}', '')")

    async def listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        # A listener that cannot connect leaves the runner on its poll interval, which still
        # finds every job; it tries again on the next wait.
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(self.url, timeout=5)
            await conn.add_listener(CHANNEL, self._notified)
            self._conn = conn

    def _notified(self, *args: Any) -> None:
        self._signal.event.set()

    async def wait(self, within: float) -> bool:
        if self._conn is None or self._conn.is_closed():
            await self.listen()
        return await self._signal.wait(within)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


class AdvisoryLockElection(Election):
    scope = "shared"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    def describe(self) -> str:
        return f"an advisory lock in {redact_url(self.url)}"

    async def try_acquire(self) -> bool:
        if await self.holding():
            return True
        try:
            conn = await asyncpg.connect(self.url, timeout=5)
        except Exception:
            return False
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK, timeout=5)
        except Exception:
            got = False
        if not got:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            return False
        self._conn = conn
        return True

    async def holding(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=5)
        except Exception:
            # The session (and so the lock) may be gone: stop leading rather than guess.
            await self.release()
            return False
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)  # closing the session releases the lock


class PostgresQueue(JobQueue):
    shared = True
    _claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, db: Database) -> None:
        super().__init__(db, NotifyWakeup(_url(db)))
        self.url = _url(db)

    def election(self) -> Election:
        return AdvisoryLockElection(self.url)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    async def _serialize_limited_claims(self, tx: Transaction) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))
