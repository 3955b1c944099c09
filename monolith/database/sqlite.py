"""SQLite backend on aiosqlite: WAL, one writer connection per process, group commit.

Why this shape:
- WAL lets readers run while one writer writes; readers get their own connections (each
  aiosqlite connection is one thread), so a slow write never stalls a read.
- Every write transaction starts with ``BEGIN IMMEDIATE``: a deferred one that upgrades from
  read to write fails with "database is locked" instead of waiting on ``busy_timeout``.
- One writer connection per process serializes this process's writes without SQLite's lock
  dance; the processes of the box queue for the file's write lock in the kernel, first come
  first served (:mod:`monolith.database.writelock`), instead of sleeping in SQLite's busy
  handler. A write that cannot have the lock by its deadline (the request's
  ``MONOLITH_WRITE_TIMEOUT`` through :data:`~monolith.database.base.write_deadline`, else
  ``busy_timeout``) raises :class:`DatabaseBusy` (a 503) and changes nothing.
- Reads run on the event loop's thread, on a connection of their own, when they are quick: a
  point read costs ~8 µs there against ~150 µs through a reader thread (the hop and
  aiosqlite's queue). A read is stopped once it has run for about ``sync_read_ms`` (1 ms, far
  within ``MONOLITH_LOOP_BLOCK_MS``; counted in SQLite's VM steps, so a busy machine's
  preemption does not count) and that statement runs on the reader threads from then on.
- Group commit: while one transaction runs on the writer, the next ones queue; each runs in
  its own ``SAVEPOINT`` inside one ``BEGIN IMMEDIATE`` and the last one of the queue commits
  them all. A caller's ``async with`` returns only after that ``COMMIT``, so nothing is
  acknowledged before it is durable, and a commit (fsync with ``synchronous=FULL``) is paid once
  per batch instead of once per request. A transaction that raises rolls back to its
  savepoint and leaves the others of the batch alone.
- A write holds the box's lock for as little time as it can: uncontended, taking the lock,
  ``BEGIN IMMEDIATE``, the statements and (with ``synchronous=NORMAL``, where a WAL commit
  writes to the page cache and never fsyncs) the ``COMMIT`` all run on the event loop's
  thread without giving the loop up, so the lock is never held across other requests' work.
  Checkpoints, the one part of a NORMAL commit that fsyncs, are taken out of the commit
  (``wal_autocheckpoint = 0`` on the writer) and run every ``_CHECKPOINT_EVERY`` commits on a
  connection of their own, off the loop (``PASSIVE``: they never block a writer).
  With ``synchronous=FULL`` the commit fsyncs, so it runs on the writer's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from monolith.database.base import (
    BackupProgress,
    Database,
    Params,
    Row,
    Transaction,
    write_deadline,
)
from monolith.database.fence import current as current_fence
from monolith.database.fence import fence_message
from monolith.database.writelock import BoxWriteLock, WriterLine
from monolith.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    IntegrityViolation,
    MonolithError,
    NotStarted,
    WritesFenced,
)
from monolith.files import private_file

T = TypeVar("T")

#: Called after each statement with (sql, seconds, rows); statement statistics plug in here.
StatementObserver = Callable[[str, float, int], None]

_BUSY_WORDS = ("database is locked", "database table is locked", "busy")
#: A loop-thread read is stopped every _STEPS VM steps to check its budget; measured here,
#: _STEPS steps of a scan take about _STEP_US microseconds (a point read takes fewer).
_STEPS = 1000
_STEP_US = 50
#: How long a BEGIN IMMEDIATE that met another program's lock sleeps before it tries again
#: (doubling up to the last); the box's own processes never meet it (they queue in writelock).
_BEGIN_RETRY = (0.001, 0.05)
#: A statement of a write transaction that is *often* slow (more CPU than _SLOW_WRITE_MS in
#: at least _SLOW_WRITE_RUNS runs and one run in _SLOW_WRITE_SHARE of its recent ones) runs
#: on the writer's thread from then on, so a long one never holds the loop. CPU time, not
#: wall time: a write preempted on a busy machine is not a slow statement. And a share, not a
#: count: a 5 µs statement that a garbage collection or a page fault made slow three times in
#: an hour is still a 5 µs statement. Counted that way, the publish's UPDATE of the channel
#: head (two per order) went to the thread within 10 s of an order load, and each of its runs
#: then held the box's write lock across a thread hop (~200 µs): throughput fell by a third
#: as statement after statement followed it.
_SLOW_WRITE_MS = 1.0
_SLOW_WRITE_RUNS = 3
_SLOW_WRITE_SHARE = 4
#: A statement's counts are halved every this many runs: "recent" runs.
_WRITE_RUNS_WINDOW = 1000
#: Commits of this process between two checkpoints (see the module doc); SQLite's own
#: autocheckpoint runs at 1,000 WAL pages, which an order's few pages reach in ~150 commits.
_CHECKPOINT_EVERY = 100
#: Frames in the WAL past which the next writer finishes the checkpoint (~8 MB of 4 KB pages).
_CATCH_UP_FRAMES = 2000
_WAL_KEEP_BYTES = 16 * 1024 * 1024


def translate(exc: sqlite3.Error) -> Exception:
    """A driver error as one of ours; programming errors (bad SQL) are left as they are."""
    if isinstance(exc, sqlite3.IntegrityError):
        fenced = fence_message(str(exc))  # a fence trigger (monolith.database.fence)
        return IntegrityViolation(str(exc)) if fenced is None else WritesFenced(fenced)
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
    """A transaction's statements run on the loop's thread, on the writer connection: the batch
    already holds the write lock (taken off the loop by ``BEGIN IMMEDIATE``), so a statement
    never waits for a lock, and nothing reaches the disk's fsync before ``COMMIT`` (off the
    loop too). A statement that once ran longer than the read budget goes to the writer's
    thread from then on (see :meth:`SQLiteDatabase._write_now`)."""

    __slots__ = ("_after_commit", "_db")

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self._after_commit = []

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        db = self._db
        if sql in db._slow_writes:
            return await db._run(db._writer_conn(), sql, params)
        rows: list[Row] = db._write_now(sql, lambda c: c.execute(sql, params).fetchall())
        return rows

    async def execute(self, sql: str, params: Params = ()) -> int:
        db = self._db
        if sql in db._slow_writes:
            return await db._exec(sql, params)
        count: int = db._write_now(sql, lambda c: c.execute(sql, params).rowcount)
        return max(count, 0)

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        db = self._db
        rows = list(rows)
        if sql in db._slow_writes:
            started = time.perf_counter()
            try:
                await db._writer_conn().executemany(sql, rows)
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            db._observe(sql, time.perf_counter() - started, len(rows))
            return
        db._write_now(sql, lambda c: c.executemany(sql, rows).rowcount)


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
        sync_read_ms: float = 1.0,
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
        self._write_lock = WriterLine()
        self._waiting = 0
        self._batch: _Batch | None = None
        self._flushing: asyncio.Future[None] | None = None
        self._box = BoxWriteLock(self.path)
        self._sync: sqlite3.Connection | None = None
        # The budget in progress-handler calls (each _STEPS VM steps).
        self._sync_budget = max(1, round(sync_read_ms * 1000 / _STEP_US))
        self._sync_steps = 0
        self._slow: set[str] = set()  # statements that ran past the budget: reader threads
        self._slow_writes: set[str] = set()  # ... and writes that did: the writer's thread
        self._write_runs: dict[str, list[int]] = {}  # each write's recent [runs, slow runs]
        # With NORMAL (or OFF) a WAL commit never fsyncs: it runs on the loop (module doc).
        self._commit_on_loop = self.synchronous in ("NORMAL", "OFF")
        self._commits = 0
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._catch_up = False  # the next writer finishes a checkpoint first (_begin)

    def describe(self) -> str:
        return f"sqlite:///{self.path} (WAL, synchronous={self.synchronous})"

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self, *, writer: bool) -> aiosqlite.Connection:
        # The writer's statements inside a batch run on the loop's thread (see _Tx).
        conn = await aiosqlite.connect(
            self.path,
            isolation_level=None,
            timeout=self.busy_timeout_ms / 1000,
            check_same_thread=not writer,
        )
        conn.row_factory = sqlite3.Row
        try:
            await self._set_up(conn, writer=writer)
        except BaseException:
            await conn.close()  # else its thread keeps the process from exiting
            raise
        return conn

    async def _set_up(self, conn: aiosqlite.Connection, *, writer: bool) -> None:
        # Setting up may wait for another process's lock (switching to WAL needs one), so it
        # waits under busy_timeout like every connection; the writer then stops waiting
        # inside SQLite: its statements run on the loop's thread, and a BEGIN that meets a
        # process outside the box lock (an sqlite3 shell) retries until its deadline instead.
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA temp_store = MEMORY")
        await conn.execute("PRAGMA cache_size = -16000")
        if writer:
            mode = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            if next(iter(mode))[0].lower() != "wal":
                raise DatabaseUnavailable(f"{self.path}: could not switch to WAL mode")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if self._commit_on_loop:  # checkpoints run off the loop instead (module doc)
                await conn.execute("PRAGMA wal_autocheckpoint = 0")
            # When the WAL starts over, its file is cut back to this (else it keeps its peak).
            await conn.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")
            await conn.execute("PRAGMA busy_timeout = 0")
        else:
            await conn.execute("PRAGMA query_only = ON")

    async def start(self) -> None:
        if self._writer is not None:
            return
        # SQLite gives the -wal and -shm files the mode of the database file.
        private_file(self.path)
        try:
            self._box.open()
            self._writer = await self._connect(writer=True)
            self._readers = [await self._connect(writer=False) for _ in range(self.readers_count)]
            self._sync = self._connect_sync()
        except BaseException as exc:
            await self.stop()  # every connection opened so far, or the process cannot exit
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        self._next_reader = itertools.cycle(range(len(self._readers)))

    def _connect_sync(self) -> sqlite3.Connection:
        """The loop thread's read connection: no busy wait, stopped past the read budget."""
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -16000")
        conn.set_progress_handler(self._over_budget, _STEPS)
        return conn

    def _over_budget(self) -> bool:
        # Counted in SQLite's VM steps, not in time: a read preempted by a busy machine is not
        # a slow statement, and must not be sent to the threads for good.
        self._sync_steps -= 1
        return self._sync_steps < 0

    async def stop(self) -> None:
        async with self._write_lock:
            if self._checkpointing is not None:
                await asyncio.wait([self._checkpointing])
            conns = [c for c in (self._writer, *self._readers, self._checkpointer) if c is not None]
            self._writer, self._readers, self._checkpointer = None, [], None
            for conn in conns:
                await conn.close()
            if self._sync is not None:
                self._sync.close()
                self._sync = None
            self._box.close()

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

    def _write_now(self, sql: str, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run one statement of the open batch on this thread (see :class:`_Tx`)."""
        conn = self._writer_conn()._conn  # aiosqlite's sqlite3 connection, opened shareable
        started = time.perf_counter()
        cpu = time.thread_time()
        try:
            result = run(conn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        seconds = time.perf_counter() - started
        slow = (time.thread_time() - cpu) * 1000 > _SLOW_WRITE_MS
        counts = self._write_runs.get(sql)
        if counts is None:
            if len(self._write_runs) >= 1000:  # statements built with values in their text
                self._write_runs.clear()
            counts = self._write_runs[sql] = [0, 0]
        counts[0] += 1
        if slow:
            # Slow once proves little (a statement's first run parses it and may load the
            # schema): it goes to the thread once it is slow often (see _SLOW_WRITE_SHARE).
            counts[1] += 1
            if counts[1] >= _SLOW_WRITE_RUNS and counts[1] * _SLOW_WRITE_SHARE >= counts[0]:
                if len(self._slow_writes) >= 1000:
                    self._slow_writes.clear()
                self._slow_writes.add(sql)
        elif counts[0] >= _WRITE_RUNS_WINDOW:
            counts[0] //= 2
            counts[1] //= 2
        self._observe(sql, seconds, result if isinstance(result, int) else len(result))  # type: ignore[arg-type]
        return result

    def _writer_conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise NotStarted("SQLiteDatabase used before start(); the app lifespan starts it")
        return self._writer

    def _read_now(self, sql: str, params: Params) -> list[Row] | None:
        """The rows, read on this thread within the budget; None: use a reader thread."""
        conn = self._sync
        if conn is None or sql in self._slow:
            return None
        started = time.perf_counter()
        self._sync_steps = self._sync_budget
        try:
            rows: list[Row] = conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "interrupted" in text:  # past the budget: this statement is not a quick one
                if len(self._slow) >= 1000:
                    self._slow.clear()
                self._slow.add(sql)
                return None
            if any(word in text for word in _BUSY_WORDS):
                return None  # a reader thread waits under busy_timeout instead
            raise translate(exc) from exc
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        self._observe(sql, time.perf_counter() - started, len(rows))
        return rows

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = self._read_now(sql, params)
        if rows is None:
            rows = await self._run(self._reader(), sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        rows = self._read_now(sql, params)
        if rows is None:
            rows = await self._run(self._reader(), sql, params)
        return rows

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    async def fenced(self) -> str | None:
        return await current_fence(self.path)

    async def optimize(self) -> None:
        # Analyzes only what changed enough to matter; cheap enough to run daily.
        await self.execute("PRAGMA optimize")

    # -- writes ----------------------------------------------------------------------------

    async def _raw(self, sql: str) -> None:
        try:
            await self._writer_conn().execute(sql)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _raw_now(self, sql: str) -> None:
        """A savepoint statement, on this thread: inside a batch it never waits."""
        try:
            self._writer_conn()._conn.execute(sql)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _begin_now(self) -> _Batch | None:
        """The batch, begun on this thread without waiting; None when a lock is taken (or a
        checkpoint is to be finished first: see :meth:`_begin`)."""
        if self._catch_up or not self._box.try_acquire():
            return None
        try:
            self._raw_now("BEGIN IMMEDIATE")
        except DatabaseBusy:  # a process outside the box lock holds SQLite's
            self._box.release()
            return None
        except BaseException:
            self._box.release()
            raise
        self._batch = _Batch()
        return self._batch

    async def _begin(self, deadline: float) -> _Batch:
        """Take the box's write lock, then SQLite's (``BEGIN IMMEDIATE``), both by ``deadline``."""
        await self._box.acquire(deadline)
        loop = asyncio.get_running_loop()
        delay = _BEGIN_RETRY[0]
        try:
            if self._catch_up:
                await _uncancellable(self._finish_checkpoint())
            while True:
                try:
                    self._raw_now("BEGIN IMMEDIATE")
                    break
                except DatabaseBusy:
                    # A process outside the box lock holds SQLite's: try again until the deadline.
                    if loop.time() >= deadline:
                        raise DatabaseBusy(
                            "another program held the database's write lock past this write's "
                            "deadline"
                        ) from None
                    await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                    delay = min(delay * 2, _BEGIN_RETRY[1])
        except BaseException:
            self._box.release()
            raise
        self._batch = _Batch()
        return self._batch

    def _commit_now(self, batch: _Batch) -> None:
        """:meth:`_commit` on this thread, for a commit that does not fsync (module doc)."""
        self._batch = None
        try:
            self._raw_now("COMMIT")
        except BaseException as exc:
            self._commit_failed(batch, exc)
            return
        self._committed(batch)

    async def _commit(self, batch: _Batch) -> None:
        """Commit the open batch and tell every transaction in it."""
        if self._commit_on_loop:
            self._commit_now(batch)
            return
        self._batch = None
        try:
            await self._raw("COMMIT")
        except BaseException as exc:
            self._commit_failed(batch, exc)
            return
        self._committed(batch)

    def _commit_failed(self, batch: _Batch, exc: BaseException) -> None:
        error = exc if isinstance(exc, MonolithError) else DatabaseUnavailable(str(exc))
        try:
            self._raw_now("ROLLBACK")
        except Exception:  # noqa: S110 - already failing; the commit error is what counts
            pass
        self._box.release()
        batch.future.set_exception(error)

    def _committed(self, batch: _Batch) -> None:
        self._box.release()
        for callback in batch.callbacks:
            callback()
        batch.future.set_result(None)
        if self._commit_on_loop:
            self._commits += 1
            if self._commits >= _CHECKPOINT_EVERY and self._checkpointing is None:
                self._commits = 0
                self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _finish_checkpoint(self) -> None:
        """With the box's lock held and no transaction open: the checkpoint completes (no
        commit can come in between; the background ones copied most frames already), so the
        next ``BEGIN`` starts the WAL over. On the writer's thread: it fsyncs."""
        self._catch_up = False
        with contextlib.suppress(sqlite3.Error):  # busy (a long reader): the next one
            await self._writer_conn().execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database off the loop (``PASSIVE``: no writer waits for it)."""
        try:
            if self._checkpointer is None:
                self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
                await self._checkpointer.execute("PRAGMA busy_timeout = 0")
            rows = await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # busy or failing: the next one tries again
            del exc
        else:
            # (busy, frames in the WAL, frames copied). Commits made while it ran leave it a
            # little behind, so under a steady load the WAL would never start over and grow
            # without end: past _CATCH_UP_FRAMES the next writer finishes the job first.
            frames = next(iter(rows))[1]
            if frames >= _CATCH_UP_FRAMES:
                self._catch_up = True
        finally:
            self._checkpointing = None

    def _deadline(self) -> float:
        now = asyncio.get_running_loop().time()
        given = write_deadline.get()
        return min(now + self.busy_timeout_ms / 1000, given if given is not None else math.inf)

    async def _flush(self) -> None:
        """Commit a batch its last transaction left open: the writers queued behind it gave up
        (deadline or cancellation) before their turn, so none of them commits it."""
        async with self._write_lock:
            current = self._batch
            if current is not None and self._waiting == 0:
                await _uncancellable(self._commit(current))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        writer = self._writer_conn()
        deadline = self._deadline()
        self._waiting += 1
        try:
            if self._write_lock.locked():
                async with asyncio.timeout_at(deadline):
                    await self._write_lock.acquire()
            else:
                await self._write_lock.acquire()  # free: taken without suspending
        except BaseException as exc:
            self._waiting -= 1
            if self._waiting == 0 and self._batch is not None and not self._write_lock.locked():
                self._flushing = asyncio.ensure_future(self._flush())
            if isinstance(exc, TimeoutError):
                raise DatabaseBusy(
                    "this process's earlier writes held the database past this write's deadline"
                ) from None
            raise
        batch: _Batch | None = None
        try:
            try:
                batch = self._batch
                if batch is None:
                    # Uncontended, the lock and BEGIN are taken here without suspending; else
                    # in this task too (no hop through another), as the lock is held from the
                    # grant on. Cancelled while waiting, the lock goes back (writelock).
                    batch = self._begin_now()
                    if batch is None:
                        batch = await self._begin(deadline)
                self._raw_now("SAVEPOINT tx")
                tx = _Tx(self)
                try:
                    yield tx
                except BaseException:
                    if writer.in_transaction:
                        self._raw_now("ROLLBACK TO tx")
                        self._raw_now("RELEASE tx")
                    else:  # SQLite rolled back the whole batch (e.g. disk full)
                        self._batch = None
                        self._box.release()
                        batch.future.set_exception(
                            DatabaseUnavailable("the transaction was rolled back by the database")
                        )
                    raise
                self._raw_now("RELEASE tx")
                batch.callbacks.extend(tx._after_commit)
                batch.count += 1
            finally:
                self._waiting -= 1
                current = self._batch
                if current is not None and (self._waiting == 0 or current.count >= self.max_batch):
                    if self._commit_on_loop:
                        self._commit_now(current)  # nothing to suspend for: no fsync
                    else:
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
