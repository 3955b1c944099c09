"""Backups: consistent while writes go on, verified, rotated; restores only into empty dirs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from monolith.database.backup import create_backup, prune, restore, verify
from monolith.database.migrate import migrate
from monolith.database.sqlite import SQLiteDatabase
from monolith.db import Database, open_database
from monolith.errors import BackupError

pytestmark = pytest.mark.profile_independent

INSERT = (
    "INSERT INTO products (name, description, price_cents, stock, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def product(n: int, description: str = "") -> tuple[object, ...]:
    now = time.time()
    return (f"product {n}", description, 100 + n, 5, now, now)


async def started(path: Path) -> SQLiteDatabase:
    db = SQLiteDatabase(path)
    await db.start()
    await migrate(db)
    return db


def ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id")]


async def test_a_backup_taken_during_writes_restores_every_row_committed_before_it(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    db = await started(live / "monolith.db")
    # Several backup steps' worth of pages, so that writes land between the steps.
    async with db.transaction() as tx:
        await tx.execute_many(INSERT, (product(n, "x" * 3000) for n in range(2000)))

    committed: list[int] = []
    backup_began = asyncio.Event()
    held: list[int] = []
    steps: list[tuple[int, int]] = []

    async def write_orders() -> None:
        for n in range(1000):
            async with db.transaction() as tx:
                row = await tx.fetch_one(INSERT + " RETURNING id", product(n))
            assert row is not None
            committed.append(int(row[0]))
            if n == 300:
                backup_began.set()
            await asyncio.sleep(0)

    def progress(done: int, total: int) -> None:
        # On the backup's own thread, after its first step: hold the copy until 50 more rows
        # have been committed, so writes certainly land while the backup is under way.
        steps.append((done, total))
        if held:
            return
        held.append(len(committed))
        deadline = time.monotonic() + 60
        while len(committed) < held[0] + 50:
            assert time.monotonic() < deadline, "no write committed during the backup"
            time.sleep(0.005)

    writer = asyncio.create_task(write_orders())
    await backup_began.wait()
    committed_before_backup = list(committed)
    info = await create_backup(db, live / "backups", progress=progress)
    await writer
    await db.stop()
    # The copy never restarted (a restart on every commit would never finish under load).
    assert len(steps) > 1
    assert len({total for _, total in steps}) == 1
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)

    fresh = tmp_path / "fresh"
    restored = restore(info.path, fresh, fresh / "monolith.db")
    assert verify(restored.path).tables >= 2
    with sqlite3.connect(restored.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    got = ids(restored.path)
    assert set(committed_before_backup) <= set(got)
    # One moment's snapshot: the rows form an unbroken prefix of what was committed, and the
    # rows written while the copy was held back are not in it.
    all_ids = ids(live / "monolith.db")
    assert got == all_ids[: len(got)]
    assert len(got) < len(all_ids)

    reopened = await started(restored.path)
    try:
        assert await reopened.fetch_val("SELECT count(*) FROM products") == len(got)
    finally:
        await reopened.stop()


async def test_a_backup_reports_progress_and_is_one_self_contained_file(tmp_path: Path) -> None:
    db = await started(tmp_path / "var" / "monolith.db")
    async with db.transaction() as tx:
        await tx.execute_many(INSERT, (product(n, "y" * 2000) for n in range(3000)))
    seen: list[tuple[int, int]] = []
    try:
        info = await create_backup(
            db, tmp_path / "var" / "backups", progress=lambda d, t: seen.append((d, t))
        )
    finally:
        await db.stop()
    assert seen[-1][0] == seen[-1][1] > 0
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert info.path.parent == tmp_path / "var" / "backups"
    assert sorted(p.name for p in info.path.parent.iterdir()) == [info.path.name]
    with sqlite3.connect(info.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (3000,)


async def test_backup_to_a_named_file_never_overwrites_one(tmp_path: Path) -> None:
    db = await started(tmp_path / "var" / "monolith.db")
    try:
        target = tmp_path / "elsewhere" / "nightly.db"
        info = await create_backup(db, tmp_path / "var" / "backups", to=target)
        assert info.path == target
        with pytest.raises(BackupError, match="already exists"):
            await create_backup(db, tmp_path / "var" / "backups", to=target)
        into_dir = await create_backup(db, tmp_path / "var" / "backups", to=tmp_path / "elsewhere")
        assert into_dir.path.parent == tmp_path / "elsewhere"
    finally:
        await db.stop()


async def test_backups_within_one_second_get_distinct_names_and_prune_keeps_the_newest(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "var" / "backups"
    db = await started(tmp_path / "var" / "monolith.db")
    try:
        made = [(await create_backup(db, folder)).path for _ in range(4)]
    finally:
        await db.stop()
    assert len(set(made)) == 4
    (folder / "notes.txt").write_text("mine")
    deleted = prune(folder, keep=2)
    assert sorted(deleted) == sorted(made[:2])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [made[2].name, made[3].name, "notes.txt"]
    )
    with pytest.raises(BackupError, match="at least 1"):
        prune(folder, keep=0)


async def test_restore_goes_into_an_empty_data_dir_only(tmp_path: Path) -> None:
    db = await started(tmp_path / "var" / "monolith.db")
    try:
        info = await create_backup(db, tmp_path / "var" / "backups")
    finally:
        await db.stop()
    with pytest.raises(BackupError, match="empty data dir"):
        restore(info.path, tmp_path / "var", tmp_path / "var" / "monolith.db")
    busy = tmp_path / "busy"
    (busy / "media").mkdir(parents=True)
    with pytest.raises(BackupError, match="media"):
        restore(info.path, busy, busy / "monolith.db")
    assert not (busy / "monolith.db").exists()
    # A generated secret key and a backups folder do not count as data.
    fresh = tmp_path / "fresh"
    (fresh / "backups").mkdir(parents=True)
    (fresh / "secret_key").write_text("k")
    assert restore(info.path, fresh, fresh / "monolith.db").path == fresh / "monolith.db"
    assert sorted(p.name for p in fresh.iterdir()) == ["backups", "monolith.db", "secret_key"]


def test_restore_refuses_files_that_are_not_good_backups(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just some text that is long enough")
    with pytest.raises(BackupError, match="not a SQLite database"):
        restore(text, fresh, fresh / "monolith.db")

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a monolith database"):
        restore(other, fresh, fresh / "monolith.db")
    with pytest.raises(BackupError, match="cannot read"):
        restore(tmp_path / "missing.db", fresh, fresh / "monolith.db")
    assert not (fresh / "monolith.db").exists()


async def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    db = await started(tmp_path / "var" / "monolith.db")
    try:
        async with db.transaction() as tx:
            await tx.execute_many(INSERT, (product(n, "z" * 500) for n in range(2000)))
        info = await create_backup(db, tmp_path / "var" / "backups")
    finally:
        await db.stop()
    data = bytearray(info.path.read_bytes())
    page = 4096
    data[page * 20 : page * 24] = b"\xa5" * (page * 4)  # four pages of the products table
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    with pytest.raises(BackupError, match=r"integrity check failed|damaged"):
        restore(damaged, fresh, fresh / "monolith.db")
    assert not (fresh / "monolith.db").exists()


async def test_restore_refuses_a_backup_from_a_newer_schema(tmp_path: Path) -> None:
    db = await started(tmp_path / "var" / "monolith.db")
    try:
        await db.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (?, ?, ?, ?)",
            (9999, "future", "x", time.time()),
        )
        info = await create_backup(db, tmp_path / "var" / "backups")
    finally:
        await db.stop()
    fresh = tmp_path / "fresh"
    with pytest.raises(BackupError, match="newer monolith"):
        restore(info.path, fresh, fresh / "monolith.db")
    assert not (fresh / "monolith.db").exists()


@pytest.mark.postgres
async def test_postgresql_backups_point_to_pg_dump(fresh_pg_url: str, tmp_path: Path) -> None:
    db: Database = open_database(fresh_pg_url)
    await db.start()
    try:
        with pytest.raises(BackupError, match="pg_dump"):
            await create_backup(db, tmp_path / "backups")
    finally:
        await db.stop()
    assert list((tmp_path / "backups").iterdir()) == []
