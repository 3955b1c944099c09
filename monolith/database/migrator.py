"""The migration runner: Alembic's operations over SQLAlchemy, in one locked transaction.

The only module of the app that imports SQLAlchemy and Alembic (loaded by
:func:`monolith.database.migrate.migrate_to` when there is something to do). PostgreSQL is
reached through SQLAlchemy's asyncpg dialect (``postgresql+asyncpg``, run with ``run_sync``),
SQLite through the standard library's ``sqlite3`` in a thread: no second driver.

Why Alembic's ``op`` without Alembic's command runner: the runner must hold one lock across
the check and every step (several workers start at once), compare checksums, and recognize
databases recorded by the SQL-file runner of earlier versions; ``schema_migrations`` keeps
the version, name, checksum and time of each applied migration, as before.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from monolith.database.base import Database
from monolith.database.sqlite import SQLiteDatabase
from monolith.database.versions import LOCK_KEY, Migration, Step, check
from monolith.errors import DatabaseUnavailable, MigrationError

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at {real} NOT NULL
)
"""

#: SQLite waits this long for another process's write lock (a migration may be long).
SQLITE_LOCK_WAIT = 120.0


def load(mig: Migration) -> ModuleType:
    """A migration file as a module (its name need not be a valid identifier)."""
    spec = importlib.util.spec_from_file_location(
        f"monolith.database.migrations.m{mig.label}", mig.path
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a file we just listed
        raise MigrationError(f"cannot load migration {mig.path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if getattr(module, "revision", None) != f"{mig.version:04d}":
        raise MigrationError(f"{mig.label}.py: revision must be {mig.version:04d!r}")
    down = getattr(module, "down_revision", "?")
    if not (down is None or (isinstance(down, str) and down.isdigit() and int(down) < mig.version)):
        raise MigrationError(f"{mig.label}.py: down_revision must name an earlier revision")
    return module


def steps(conn: sa.Connection, dialect: str, known: list[Migration], target: int) -> list[Step]:
    """Under the lock: check what is recorded, then apply or revert up to ``target``."""
    if dialect == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        conn.exec_driver_sql(_CREATE_TABLE.format(real="DOUBLE PRECISION"))
    else:  # SQLite: BEGIN IMMEDIATE already holds the database's write lock
        conn.exec_driver_sql(_CREATE_TABLE.format(real="REAL"))
    rows = conn.exec_driver_sql(
        "SELECT version, name, checksum, applied_at FROM schema_migrations"
    ).all()
    applied = {int(r[0]): (str(r[1]), str(r[2]), float(r[3])) for r in rows}
    stamp = sa.text("UPDATE schema_migrations SET checksum = :checksum WHERE version = :version")
    by_version = {m.version: m for m in known}
    for version in check(known, applied):  # recorded by the SQL-file runner: same schema
        conn.execute(stamp, {"checksum": by_version[version].checksum, "version": version})
    done: list[Step] = []
    with Operations.context(MigrationContext.configure(connection=conn)):
        for mig in known:
            if mig.version <= target and mig.version not in applied:
                load(mig).upgrade()
                conn.execute(
                    sa.text(
                        "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                        "VALUES (:version, :name, :checksum, :at)"
                    ),
                    {
                        "version": mig.version,
                        "name": mig.name,
                        "checksum": mig.checksum,
                        "at": time.time(),
                    },
                )
                done.append(Step(mig, "up"))
        for mig in reversed(known):
            if mig.version > target and mig.version in applied:
                load(mig).downgrade()
                conn.execute(
                    sa.text("DELETE FROM schema_migrations WHERE version = :version"),
                    {"version": mig.version},
                )
                done.append(Step(mig, "down"))
    return done


def _sqlite(path: str, known: list[Migration], target: int) -> list[Step]:
    engine = sa.create_engine(
        f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": SQLITE_LOCK_WAIT}
    )

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN, so DDL is in the transaction

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            return steps(conn, "sqlite", known, target)
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"sqlite:///{path}: {exc.orig}") from None
    finally:
        engine.dispose()


async def _postgres(url: str, known: list[Migration], target: int) -> list[Step]:
    rest = url.split("://", 1)[1]
    engine = create_async_engine(f"postgresql+asyncpg://{rest}", poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(steps, "postgresql", known, target)
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise DatabaseUnavailable(f"PostgreSQL is unavailable: {exc.__class__.__name__}") from None
    finally:
        await engine.dispose()


async def run(db: Database, known: list[Migration], target: int) -> list[Step]:
    """Bring ``db`` to version ``target`` in one transaction, under the migration lock."""
    if isinstance(db, SQLiteDatabase):
        return await asyncio.to_thread(_sqlite, str(db.path), known, target)
    # asyncpg is an optional dependency (monolith[postgres]); a PostgresDatabase exists only
    # when it is installed.
    from monolith.database.postgres import PostgresDatabase

    if isinstance(db, PostgresDatabase):
        return await _postgres(db.url, known, target)
    raise MigrationError(f"no migration runner for {db.describe()}")
