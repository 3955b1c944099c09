"""Migrations: applied once, even when several processes start at the same moment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monolith.database import migrate as migrations
from monolith.db import Database, open_database
from monolith.errors import MigrationError
from tests.profile import DEFAULT_BACKENDS
from tests.server import base_env, monolith_cmd

pytestmark = pytest.mark.slow


def test_both_dialects_ship_the_same_versions() -> None:
    sqlite = [(m.version, m.name) for m in migrations.available("sqlite")]
    postgres = [(m.version, m.name) for m in migrations.available("postgresql")]
    assert sqlite == postgres
    assert sqlite[0] == (1, "products")


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


def test_split_statements_keeps_triggers_whole() -> None:
    script = """
    CREATE TABLE a (x INTEGER); -- one
    CREATE TRIGGER tr AFTER INSERT ON a BEGIN UPDATE a SET x = 1; END;
    """
    parts = migrations.split_statements(script)
    assert len(parts) == 2
    assert parts[1].startswith("CREATE TRIGGER") and parts[1].endswith("END;")


def test_migrate_status_flags_a_changed_migration(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var")
    run = subprocess.run(
        monolith_cmd("migrate", "--status", "--json"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert '"pending"' in run.stdout


@pytest.mark.profile_independent
@pytest.mark.parametrize("processes", [6])
def test_concurrent_processes_apply_each_migration_exactly_once(
    db_url: str, tmp_path: Path, processes: int
) -> None:
    env = base_env(tmp_path / "var", **(DEFAULT_BACKENDS | {"MONOLITH_DATABASE_URL": db_url}))
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
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    import json

    applied = [m["version"] for out, _ in outputs for m in json.loads(out)]
    known = [
        m.version for m in migrations.available("postgresql" if "postgres" in db_url else "sqlite")
    ]
    # Every migration was applied by exactly one of the processes.
    assert sorted(applied) == sorted(known)


async def test_0006_moves_the_jobs_table_keeping_rows_and_never_reuses_an_id(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = migrations.available
    db = open_database(db_url)
    await db.start()
    try:
        monkeypatch.setattr(
            migrations, "available", lambda d: [m for m in shipped(d) if m.version < 6]
        )
        await migrations.migrate(db)
        async with db.transaction() as tx:  # rows as 0003 knew them
            for state, key in (("queued", "k:q"), ("failed", "k:f"), ("done", "k:d")):
                await tx.execute(
                    "INSERT INTO jobs (name, state, run_at, unique_key, created_at, updated_at)"
                    " VALUES ('t.old', ?, 1, ?, 1, 2)",
                    (state, key),
                )
        # Up to 0006 (later migrations of other features are not this test's business).
        monkeypatch.setattr(
            migrations, "available", lambda d: [m for m in shipped(d) if m.version <= 6]
        )
        assert [m.version for m in await migrations.migrate(db)] == [6]
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
