"""SQLite backend on aiosqlite: WAL, one writer connection per process, group commit.

Why this shape:
- WAL lets readers run while one writer writes; readers get their own connections (each
  aiosqlite connection is one thread), so a slow write never stalls a read.
- Every write transaction starts with ``BEGIN IMMEDIATE``: a deferred one that upgrades from
  read to write fails with "database is locked" instead of waiting on ``busy_timeout``.
- One writer connection per process serializes this process's writes without SQLite's lock
  dance; other processes wait on ``busy_timeout``. Past it, :class:`DatabaseBusy` (a 503).
- Group commit: while one transaction runs on the writer, the next ones queue; each runs in
  its own ``SAVEPOINT`` inside one ``BEGIN IMMEDIATE`` and the last one of the queue commits
  them all. A caller's ``async with`` returns only after that ``COMMIT``, so nothing is
  acknowledged before it is durable, and a commit (fsync with ``synchronous=FULL``) is paid once
  per batch instead of once per request. A transaction that raises rolls back to its
  savepoint and leaves the others of the batch alone.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from monolith.database.base import BackupProgress, Database, Params, Row, Transaction
from monolith.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    IntegrityViolation,
    MonolithError,
    NotStarted,
)
from monolith.files import private_file

T = TypeVar("T")

#: Called after each statement with (sql, seconds, rows); statement statistics plug in here.
StatementObserver = Callable[[str, float, int], None]

_BUSY_WORDS = ("database is locked", "database table is locked", "busy")


def translate(exc: sqlite3.Error) -> Exception:
    """A driver error as one of ours; programming errors (bad SQL) are left as they are."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(str(exc))
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if any(word in text for word in _BUSY_WORDS):
            return DatabaseBusy("the database stayed locked past its busy timeout")
        if "unable to open" in text or "disk i/o" in text or "readonly" in text:
            return DatabaseUnavailable(f"the database file cannot be used: {exc}")
        if "database or disk is full" in text:
            return DatabaseUnavailable("the disk is full")
    return exc


async def _uncancellable(step: Coroutine[Any, Any, T]) -> T:
    """Run a step that pairs a statement with its bookkeeping to the end, even when cancelled.

    A cancelled await does not stop the statement (it runs on the connection's thread), so
    bookkeeping skipped by a cancellation (say, ``BEGIN`` run but the batch not recorded)
    would break every later transaction. The write lock stays held until the step is done.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise


class _Batch:
    """One ``BEGIN IMMEDIATE`` shared by several transactions, and the future of its commit."""

    __slots__ = ("callbacks", "count", "future")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.callbacks: list[Callable[[], Any]] = []
        self.count = 0


class _Tx(Transaction):
    __slots__ = ("_after_commit", "_db")

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._after_commit = []

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._db._run(self._db._writer_conn(), sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._db._run(self._db._writer_conn(), sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._db._exec(sql, params)

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        conn = self._db._writer_conn()
        started = time.perf_counter()
        rows = list(rows)
        try:
            await conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        self._db._observe(sql, time.perf_counter() - started, len(rows))


class SQLiteDatabase(Database):
    dialect = "sqlite"
    scope = "box"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        readers: int = 2,
        pool_size: int = 0,  # accepted for a uniform factory; SQLite uses `readers`
        max_batch: int = 64,
        # PostgreSQL settings, accepted for a uniform factory:
        statement_timeout_ms: int = 0,
        idle_in_transaction_timeout_ms: int = 0,
        direct_url: str = "",
    ) -> None:
        del pool_size, statement_timeout_ms, idle_in_transaction_timeout_ms, direct_url
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        self.readers_count = max(1, readers)
        self.max_batch = max_batch
        self.observer: StatementObserver | None = None
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader: Iterable[int] = itertools.cycle([0])
        self._write_lock = asyncio.Lock()
        self._waiting = 0
        self._batch: _Batch | None = None

    def describe(self) -> str:
        return f"sqlite:///{self.path} (WAL, synchronous={self.synchronous})"

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self, *, writer: bool) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA temp_store = MEMORY")
        await conn.execute("PRAGMA cache_size = -16000")
        if writer:
            mode = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            if next(iter(mode))[0].lower() != "wal":
                raise DatabaseUnavailable(f"{self.path}: could not switch to WAL mode")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        else:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    async def start(self) -> None:
        if self._writer is not None:
            return
        # SQLite gives the -wal and -shm files the mode of the database file.
        private_file(self.path)
        try:
            self._writer = await self._connect(writer=True)
            self._readers = [await self._connect(writer=False) for _ in range(self.readers_count)]
        except sqlite3.Error as exc:
            await self.stop()
            raise translate(exc) from exc
        self._next_reader = itertools.cycle(range(len(self._readers)))

    async def stop(self) -> None:
        async with self._write_lock:
            conns = [c for c in (self._writer, *self._readers) if c is not None]
            self._writer, self._readers = None, []
            for conn in conns:
                await conn.close()

    # -- reads -----------------------------------------------------------------------------

    def _observe(self, sql: str, seconds: float, rows: int) -> None:
        if self.observer is not None:
            self.observer(sql, seconds, rows)

    async def _run(self, conn: aiosqlite.Connection, sql: str, params: Params) -> list[Row]:
        started = time.perf_counter()
        try:
            rows = await conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        result: list[Row] = rows if isinstance(rows, list) else list(rows)
        self._observe(sql, time.perf_counter() - started, len(result))
        return result

    async def _exec(self, sql: str, params: Params) -> int:
        started = time.perf_counter()
        try:
            cursor = await self._writer_conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        count = max(cursor.rowcount, 0)
        self._observe(sql, time.perf_counter() - started, count)
        return count

    def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise NotStarted("SQLiteDatabase used before start(); the app lifespan starts it")
        return self._readers[next(self._next_reader)]  # type: ignore[call-overload]

    def _writer_conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise NotStarted("SQLiteDatabase used before start(); the app lifespan starts it")
        return self._writer

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._run(self._reader(), sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._run(self._reader(), sql, params)

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    async def optimize(self) -> None:
        # Analyzes only what changed enough to matter; cheap enough to run daily.
        await self.execute("PRAGMA optimize")

    # -- writes ----------------------------------------------------------------------------

    async def _raw(self, sql: str) -> None:
        try:
            await self._writer_conn().execute(sql)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def _begin(self) -> _Batch:
        await self._raw("BEGIN IMMEDIATE")
        self._batch = _Batch()
        return self._batch

    async def _commit(self, batch: _Batch) -> None:
        """Commit the open batch and tell every transaction in it."""
        self._batch = None
        try:
            await self._raw("COMMIT")
        except BaseException as exc:
            error = exc if isinstance(exc, MonolithError) else DatabaseUnavailable(str(exc))
            try:
                await self._raw("ROLLBACK")
            except Exception:  # noqa: S110 - already failing; the commit error is what counts
                pass
            batch.future.set_exception(error)
            return
        for callback in batch.callbacks:
            callback()
        batch.future.set_result(None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        writer = self._writer_conn()
        self._waiting += 1
        try:
            await self._write_lock.acquire()
        except BaseException:
            self._waiting -= 1
            raise
        batch: _Batch | None = None
        try:
            try:
                batch = self._batch
                if batch is None:
                    batch = await _uncancellable(self._begin())
                await self._raw("SAVEPOINT tx")
                tx = _Tx(self)
                try:
                    yield tx
                except BaseException:
                    if writer.in_transaction:
                        await self._raw("ROLLBACK TO tx")
                        await self._raw("RELEASE tx")
                    else:  # SQLite rolled back the whole batch (e.g. disk full)
                        self._batch = None
                        batch.future.set_exception(
                            DatabaseUnavailable("the transaction was rolled back by the database")
                        )
                    raise
                await self._raw("RELEASE tx")
                batch.callbacks.extend(tx._after_commit)
                batch.count += 1
            finally:
                self._waiting -= 1
                current = self._batch
                if current is not None and (self._waiting == 0 or current.count >= self.max_batch):
                    await _uncancellable(self._commit(current))
        finally:
            self._write_lock.release()
        # The commit may be done by a transaction queued behind this one: wait for it.
        await asyncio.shield(batch.future)

    async def backup_to(self, target: Path, progress: BackupProgress | None = None) -> None:
        """An online, consistent copy of the database in ``target`` (the SQLite backup API).

        The copy is the database as of the moment the backup began: it runs on a connection of
        its own inside one read transaction, which pins a WAL snapshot. Without that, SQLite
        restarts a step-wise backup whenever another connection (any other worker process)
        commits, and under a steady write load it would never finish. Writers are not blocked;
        the WAL just cannot be checkpointed past the snapshot until the copy is done.
        The copy is left in rollback-journal mode: one self-contained file.
        """
        self._writer_conn()  # a backup of a database that was never started is a mistake
        source = await self._connect(writer=False)
        dest = await aiosqlite.connect(target, isolation_level=None)
        try:

            def _progress(status: int, remaining: int, total: int) -> None:
                del status
                if progress is not None:
                    progress(total - remaining, total)

            try:
                await source.execute("BEGIN")
                await source.execute_fetchall("SELECT count(*) FROM sqlite_schema")
                await source.backup(dest, pages=1024, progress=_progress, sleep=0)
                await source.execute("COMMIT")
                await dest.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.Error as exc:
                raise translate(exc) from exc
        finally:
            await dest.close()
            await source.close()
