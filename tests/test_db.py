"""The Database interface, the same suite over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from monolith.database.postgres import to_pg
from monolith.db import Database, open_database
from monolith.errors import ConfigError, DatabaseBusy, IntegrityViolation, NotStarted

pytestmark = pytest.mark.profile_independent


async def _make_table(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")


async def test_fetch_and_execute_round_trip(db: Database) -> None:
    await _make_table(db)
    assert await db.execute("INSERT INTO t (id, v) VALUES (?, ?)", (1, "one")) == 1
    row = await db.fetch_one("SELECT id, v FROM t WHERE id = ?", (1,))
    assert row is not None and row["v"] == "one" and row[0] == 1
    assert await db.fetch_one("SELECT id FROM t WHERE id = ?", (2,)) is None
    assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1
    assert [r["v"] for r in await db.fetch_all("SELECT v FROM t ORDER BY id")] == ["one"]


async def test_a_transaction_that_raises_changes_nothing(db: Database) -> None:
    await _make_table(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", (1, "one"))
            raise RuntimeError("boom")
    assert await db.fetch_val("SELECT COUNT(*) FROM t") == 0


async def test_reads_inside_a_transaction_see_its_own_writes(db: Database) -> None:
    await _make_table(db)
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", (1, "one"))
        assert await tx.fetch_val("SELECT v FROM t WHERE id = ?", (1,)) == "one"
        row = await tx.fetch_one("UPDATE t SET v = ? WHERE id = ? RETURNING v", ("uno", 1))
        assert row is not None and row["v"] == "uno"


async def test_a_unique_violation_is_an_integrity_violation(db: Database) -> None:
    await _make_table(db)
    await db.execute("INSERT INTO t (id, v) VALUES (?, ?)", (1, "one"))
    with pytest.raises(IntegrityViolation):
        await db.execute("INSERT INTO t (id, v) VALUES (?, ?)", (2, "one"))
    assert await db.fetch_val("SELECT COUNT(*) FROM t") == 1


async def test_concurrent_transactions_commit_independently(db: Database) -> None:
    """Many writers at once (group commit on SQLite): the failing ones leave the others alone."""
    await _make_table(db)

    async def write(i: int) -> bool:
        try:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", (i, f"v{i}"))
                await asyncio.sleep(0)
                if i % 5 == 0:
                    raise ValueError("refused")
        except ValueError:
            return False
        return True

    results = await asyncio.gather(*(write(i) for i in range(1, 101)))
    committed = {i for i, ok in zip(range(1, 101), results, strict=True) if ok}
    rows = {int(r["id"]) for r in await db.fetch_all("SELECT id FROM t")}
    assert rows == committed
    assert len(rows) == 80


async def test_on_commit_callbacks_run_only_after_commit(db: Database) -> None:
    await _make_table(db)
    seen: list[str] = []
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", (1, "one"))
        tx.on_commit(lambda: seen.append("committed"))
        assert seen == []
    assert seen == ["committed"]
    with pytest.raises(KeyError):
        async with db.transaction() as tx:
            tx.on_commit(lambda: seen.append("rolled back"))
            raise KeyError("x")
    assert seen == ["committed"]


async def test_execute_many(db: Database) -> None:
    await _make_table(db)
    async with db.transaction() as tx:
        await tx.execute_many(
            "INSERT INTO t (id, v) VALUES (?, ?)", [(i, str(i)) for i in range(50)]
        )
    assert await db.fetch_val("SELECT COUNT(*) FROM t") == 50


async def test_using_a_database_before_start_says_so(db_url: str) -> None:
    db = open_database(db_url)
    with pytest.raises(NotStarted, match="before start"):
        await db.fetch_one("SELECT 1")


def test_unknown_url_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_database("mysql://localhost/x")


def test_placeholders_become_numbered_outside_strings() -> None:
    assert to_pg("SELECT ? , '?' , \"a?\" , ? -- ?\n") == "SELECT $1 , '?' , \"a?\" , $2 -- ?\n"


async def test_sqlite_locked_past_busy_timeout_is_database_busy(tmp_path: Path) -> None:
    """Another process holding the write lock: a clear DatabaseBusy (the HTTP layer's 503)."""
    path = tmp_path / "busy.db"
    db = open_database(f"sqlite:///{path}", busy_timeout_ms=200)
    await db.start()
    try:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseBusy):
                async with db.transaction() as tx:
                    await tx.execute("CREATE TABLE x (id INTEGER)")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        async with db.transaction() as tx:  # and it recovers once the lock is gone
            await tx.execute("CREATE TABLE x (id INTEGER)")
    finally:
        await db.stop()


async def test_sqlite_uses_wal_and_the_chosen_synchronous(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'w.db'}", synchronous="FULL")
    await db.start()
    try:
        async with db.transaction() as tx:
            assert await tx.fetch_val("PRAGMA journal_mode") == "wal"
            assert await tx.fetch_val("PRAGMA synchronous") == 2  # FULL
            assert await tx.fetch_val("PRAGMA foreign_keys") == 1
    finally:
        await db.stop()


def test_postgres_description_hides_the_password() -> None:
    db = open_database("postgresql://app:s3cret@db.example:5433/monolith")
    assert "s3cret" not in db.describe()
    assert db.describe() == "postgresql://app@db.example:5433/monolith"


class LoopTurns:
    """Counts the event loop's turns while it runs (a task that yields on every turn)."""

    def __init__(self) -> None:
        self.count = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


async def test_sqlite_write_holds_the_loop_not_the_lock_across_turns(tmp_path: Path) -> None:
    """With synchronous=NORMAL an uncontended write (lock, BEGIN, statements, COMMIT) runs
    without giving up the event loop: the box's write lock is never held while the loop
    serves other requests. With FULL the commit's fsync goes to a thread instead."""
    for synchronous, suspends in (("NORMAL", False), ("FULL", True)):
        db = open_database(f"sqlite:///{tmp_path / f'{synchronous}.db'}", synchronous=synchronous)
        await db.start()
        turns = LoopTurns()
        try:
            async with db.transaction() as tx:
                await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await asyncio.sleep(0)
            before = turns.count
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (v) VALUES (?)", ("a",))
                await tx.execute("UPDATE t SET v = ? WHERE id = 1", ("b",))
            assert (turns.count != before) is suspends, synchronous
            assert await db.fetch_val("SELECT v FROM t WHERE id = 1") == "b"
        finally:
            turns.stop()
            await db.stop()


async def test_sqlite_writers_queued_behind_a_batch_pass_in_one_turn(tmp_path: Path) -> None:
    """Writers queued in one process run as soon as the one ahead lets go, all on the same
    turn of the loop, in arrival order: the box's lock is not held
    for a turn per writer (under load a turn is milliseconds). A writer that gives up while
    queued (its deadline) leaves the line working for the others."""
    db = open_database(f"sqlite:///{tmp_path / 'line.db'}")
    await db.start()
    turns = LoopTurns()
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER)")
        gate = asyncio.Event()

        async def first() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (who) VALUES (0)")
                await gate.wait()  # holds the line, as a write waiting for the box's lock would

        async def write(who: int) -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (who) VALUES (?)", (who,))

        async def give_up() -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await write(-1)

        holder = asyncio.create_task(first())
        await asyncio.sleep(0)
        queued = [asyncio.create_task(write(who)) for who in range(1, 41)]
        quitter = asyncio.create_task(give_up())
        queued.append(asyncio.create_task(write(41)))
        await quitter
        for _ in range(3):
            await asyncio.sleep(0)
        assert not any(task.done() for task in queued)
        before = turns.count
        gate.set()
        await asyncio.gather(holder, *queued)
        took = turns.count - before
        assert took <= 6, f"40 queued writers took {took} turns"
        rows = await db.fetch_all("SELECT who FROM t ORDER BY id")
        assert [r[0] for r in rows] == list(range(42))
    finally:
        turns.stop()
        await db.stop()


async def test_sqlite_wal_is_checkpointed_off_the_commit(tmp_path: Path) -> None:
    """The writer's commits leave checkpoints to a connection of their own: the WAL's pages
    still reach the database file as commits go on."""
    path = tmp_path / "c.db"
    db = open_database(f"sqlite:///{path}")
    await db.start()
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        start = path.stat().st_size
        for _ in range(300):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO blobs (b) VALUES (?)", (bytes(4000),))
        deadline = asyncio.get_running_loop().time() + 30
        while path.stat().st_size < start + 250 * 4000:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint reached the file"
            async with db.transaction() as tx:  # later commits start the next checkpoint
                await tx.execute("INSERT INTO blobs (b) VALUES (?)", (bytes(10),))
            await asyncio.sleep(0.05)
    finally:
        await db.stop()


async def test_sqlite_a_write_goes_off_the_loop_when_often_slow_not_when_slow_now_and_then(
    tmp_path: Path,
) -> None:
    """A write statement runs on the loop's thread until it is often slow. One that a garbage
    collection or a page fault makes slow a few times among thousands of quick runs stays
    there (sent to the writer's thread, each run would hold the box's write lock across a
    thread hop); one that is slow every time goes to the writer's thread after a few runs."""
    db = open_database(f"sqlite:///{tmp_path / 't.db'}")
    await db.start()
    ran_on: list[threading.Thread] = []

    def burn(ms: float) -> int:
        ran_on.append(threading.current_thread())
        end = time.thread_time() + ms / 1000
        while time.thread_time() < end:
            pass
        return 0

    try:
        writer = db._writer  # type: ignore[attr-defined]
        await writer.create_function("burn", 1, burn)
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
            await tx.execute("INSERT INTO t (id, v) VALUES (1, 0)")
        loop_thread = threading.current_thread()

        for i in range(400):  # 3 ms of CPU on every 20th run: slow now and then
            ms = 3 if i % 20 == 0 else 0
            async with db.transaction() as tx:
                await tx.execute("UPDATE t SET v = burn(?) WHERE id = 1", (ms,))
        assert len(ran_on) == 400 and all(t is loop_thread for t in ran_on)

        ran_on.clear()
        for _ in range(10):  # slow every time
            async with db.transaction() as tx:
                await tx.execute("UPDATE t SET v = burn(?) + 1 WHERE id = 1", (3,))
        assert all(t is loop_thread for t in ran_on[:3])
        assert not any(t is loop_thread for t in ran_on[3:]), "a slow write kept the loop"
        assert await db.fetch_val("SELECT v FROM t WHERE id = 1") == 1
    finally:
        await db.stop()
