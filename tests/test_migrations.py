"""Migrations: written once for both databases, up and down, applied once under a lock even
when several processes start at the same moment; databases made before upgrade in place."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monolith.database import migrate as migrations
from monolith.database import versions
from monolith.db import Database, open_database
from monolith.errors import MigrationError
from tests.profile import DEFAULT_BACKENDS
from tests.schemas import schema_of
from tests.server import base_env, monolith_cmd

pytestmark = pytest.mark.slow

LEGACY = Path(__file__).parent / "data" / "legacy_migrations"
PACKAGE = Path(migrations.__file__).parent / "migrations"


def test_one_line_of_versions_in_the_package() -> None:
    known = migrations.available()
    assert [m.version for m in known] == sorted({m.version for m in known})
    assert known[0].label == "0001_products"
    assert not list(PACKAGE.rglob("*.sql")), "SQL migrations must be converted (docs/GUIDE.md)"


def test_a_stray_sql_migration_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQL file merged after migrations were written once stops everything, saying what
    to do, instead of being silently ignored."""
    folder = tmp_path / "migrations"
    shutil.copytree(PACKAGE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "sqlite").mkdir()
    (folder / "sqlite" / "0042_late.sql").write_text("CREATE TABLE late (id INTEGER);\n")
    monkeypatch.setattr(versions, "_folder", lambda: folder)
    with pytest.raises(MigrationError, match=r"sqlite/0042_late\.sql.*NNNN_name\.py"):
        migrations.available()


async def test_status_lists_pending_then_applied(db_url: str) -> None:
    db = open_database(db_url)
    await db.start()
    try:
        before = await migrations.status(db)
        assert all(s.applied_at is None for s in before)
        applied = await migrations.migrate(db)
        assert [m.version for m in applied] == [s.version for s in before]
        assert await migrations.migrate(db) == []
        assert all(s.applied_at is not None and s.checksum_ok for s in await migrations.status(db))
    finally:
        await db.stop()


async def test_an_applied_migration_that_changed_stops_everything(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("UPDATE schema_migrations SET checksum = ? WHERE version = 1", ("0" * 64,))
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrations.migrate(db)
    assert not all(s.checksum_ok for s in await migrations.status(db))


async def test_an_unknown_migration_in_the_database_stops_everything(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (999, 'from_the_future', 'x', 0)"
        )
    with pytest.raises(MigrationError, match="does not know"):
        await migrations.migrate(db)


async def test_every_migration_goes_up_and_down_with_one_schema_on_both_databases(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    """Each step down and up again on SQLite and PostgreSQL: after every step both have the
    same (normalized) schema, and after all of it the same as a fresh ``up``."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'steps.db'}", "postgresql": fresh_pg_url}
    dbs = {name: open_database(url) for name, url in urls.items()}
    for db in dbs.values():
        await db.start()
    try:
        known = migrations.available()
        for db in dbs.values():
            await migrations.migrate(db)
        fresh = await schema_of(urls["sqlite"])
        assert fresh == await schema_of(urls["postgresql"])
        assert set(fresh) >= {"products", "users", "jobs", "orders", "order_items"}
        versions = [0] + [m.version for m in known]
        for below, top in reversed(list(itertools.pairwise(versions))):
            for db in dbs.values():  # down one at a time, to nothing
                steps = await migrations.migrate_to(db, below)
                assert [(s.migration.version, s.direction) for s in steps] == [(top, "down")]
            assert await schema_of(urls["sqlite"]) == await schema_of(urls["postgresql"])
        assert await schema_of(urls["sqlite"]) == {}
        for target in versions[1:]:  # and up again, one at a time
            for db in dbs.values():
                steps = await migrations.migrate_to(db, target)
                assert [(s.migration.version, s.direction) for s in steps] == [(target, "up")]
            assert await schema_of(urls["sqlite"]) == await schema_of(urls["postgresql"])
        for url in urls.values():
            assert await schema_of(url) == fresh
    finally:
        for db in dbs.values():
            await db.stop()


async def _legacy_database(url: str, dialect: str) -> None:
    """A database as the SQL-file runner of earlier versions left it: 0001-0005 applied
    from their SQL files and recorded with those files' checksums, plus data."""
    files = sorted((LEGACY / dialect).glob("*.sql"))
    if dialect == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "checksum TEXT NOT NULL, applied_at REAL NOT NULL);"
        )
        for f in files:
            conn.executescript(f.read_text())
        conn.close()
    db = open_database(url)
    await db.start()
    try:
        async with db.transaction() as tx:
            if dialect == "postgresql":
                await tx.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT "
                    "NOT NULL, checksum TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                for f in files:
                    await tx.execute(f.read_text())
            for f in files:
                version, name = f.stem.split("_", 1)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                    "VALUES (?, ?, ?, ?)",
                    (int(version), name, hashlib.sha256(f.read_bytes()).hexdigest(), time.time()),
                )
            await tx.execute(
                "INSERT INTO products (name, description, price_cents, stock, created_at, "
                "updated_at) VALUES ('Old Kettle', 'from before', 1200, 3, 1.0, 2.0)"
            )
            await tx.execute(
                "INSERT INTO users (email, password_hash, name, created_at, updated_at) "
                "VALUES ('old@example.com', 'h', 'Old', 1.0, 1.0)"
            )
    finally:
        await db.stop()


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_a_database_made_by_the_sql_file_runner_upgrades_in_place(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if dialect == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    await _legacy_database(url, dialect)
    db = open_database(url)
    await db.start()
    try:
        assert all(s.checksum_ok for s in await migrations.status(db))  # recognized
        applied = await migrations.migrate(db)
        known = migrations.available()
        old = {int(f.name[:4]) for f in (LEGACY / dialect).glob("*.sql")}
        assert [m.version for m in applied] == [m.version for m in known if m.version not in old]
        recorded = {
            int(r[0]): str(r[1])
            for r in await db.fetch_all("SELECT version, checksum FROM schema_migrations")
        }
        assert recorded == {m.version: m.checksum for m in known}  # re-stamped
        row = await db.fetch_one("SELECT name, price_cents, stock FROM products")
        assert row is not None and tuple(row) == ("Old Kettle", 1200, 3)
        assert await db.fetch_val("SELECT email FROM users") == "old@example.com"
        assert await db.fetch_val("SELECT last_id FROM channel_head WHERE id = 1") == 0
    finally:
        await db.stop()
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    fresh = open_database(fresh_url)
    await fresh.start()
    await migrations.migrate(fresh)
    await fresh.stop()
    assert await schema_of(url) == await schema_of(fresh_url)


def test_migrate_to_goes_down_and_up_from_the_command_line(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", **DEFAULT_BACKENDS)
    (tmp_path / "var").mkdir()

    def migrate(*args: str) -> list[dict[str, object]]:
        run = subprocess.run(
            monolith_cmd("migrate", *args, "--json"),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        result: list[dict[str, object]] = json.loads(run.stdout)
        return result

    versions = [m.version for m in migrations.available()]
    assert [r["version"] for r in migrate()] == versions
    down = migrate("--to", "0002")
    assert [(r["version"], r["direction"]) for r in down] == [
        (v, "down") for v in reversed(versions) if v > 2
    ]
    states = {r["version"]: r["state"] for r in migrate("--status")}
    assert states == {v: "applied" if v <= 2 else "pending" for v in versions}
    assert [r["version"] for r in migrate("--to", "head")] == [v for v in versions if v > 2]
    bad = subprocess.run(
        monolith_cmd("migrate", "--to", "9999"), env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "no such migration" in bad.stderr


def test_migrate_status_flags_a_changed_migration(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", **DEFAULT_BACKENDS)
    (tmp_path / "var").mkdir()
    subprocess.run(monolith_cmd("migrate"), env=env, check=True, capture_output=True)
    conn = sqlite3.connect(tmp_path / "var" / "monolith.db")
    with conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 2")
    conn.close()
    run = subprocess.run(
        monolith_cmd("migrate", "--status", "--json"), env=env, capture_output=True, text=True
    )
    assert run.returncode == 1
    rows = {r["version"]: r for r in json.loads(run.stdout)}
    assert not rows[2]["checksum_ok"] and rows[1]["checksum_ok"]


@pytest.mark.profile_independent
def test_the_app_never_imports_sqlalchemy() -> None:
    """SQLAlchemy and Alembic are for the migration runner only: the request path keeps the
    raw drivers."""
    code = (
        "import sys, monolith.app, monolith.asgi, monolith.features\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == "[]"


@pytest.mark.profile_independent
@pytest.mark.parametrize("processes", [6])
def test_concurrent_processes_apply_each_migration_exactly_once(
    db_url: str, tmp_path: Path, processes: int
) -> None:
    env = base_env(tmp_path / "var", **(DEFAULT_BACKENDS | {"MONOLITH_DATABASE_URL": db_url}))
    (tmp_path / "var").mkdir()
    procs = [
        subprocess.Popen(
            monolith_cmd("migrate", "--json"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    applied = [m["version"] for out, _ in outputs for m in json.loads(out)]
    # Every migration was applied by exactly one of the processes.
    assert sorted(applied) == [m.version for m in migrations.available()]


async def test_0006_moves_the_jobs_table_keeping_rows_and_never_reuses_an_id(
    db_url: str,
) -> None:
    db = open_database(db_url)
    await db.start()
    try:
        await migrations.migrate_to(db, 5)
        async with db.transaction() as tx:  # rows as 0003 knew them
            for state, key in (("queued", "k:q"), ("failed", "k:f"), ("done", "k:d")):
                await tx.execute(
                    "INSERT INTO jobs (name, state, run_at, unique_key, created_at, updated_at)"
                    " VALUES ('t.old', ?, 1, ?, 1, 2)",
                    (state, key),
                )
        assert [s.migration.version for s in await migrations.migrate_to(db, 6)] == [6]
        rows = await db.fetch_all(
            "SELECT id, state, unique_key, unique_hold, finished_at, rescues FROM jobs ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "queued", "k:q", "k:q", None, 0),
            (2, "failed", "k:f", None, 2.0, 0),  # a failed job no longer holds its key
            (3, "done", "k:d", "k:d", 2.0, 0),
        ]
        async with db.transaction() as tx:  # the newest goes (pruned); its id stays used
            await tx.execute("DELETE FROM jobs WHERE id = 3")
            new_id = await tx.fetch_val(
                "INSERT INTO jobs (name, run_at, created_at, updated_at) VALUES ('t.new', 1, 1, 1) "
                "RETURNING id"
            )
        assert new_id == 4
    finally:
        await db.stop()
