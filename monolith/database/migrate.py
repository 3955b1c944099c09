"""Versioned, checksummed migrations, written once for both databases, applied once under a lock.

Each migration is one file, ``migrations/NNNN_name.py``, in Alembic's revision format:
``revision``/``down_revision`` and ``upgrade()``/``downgrade()`` written with Alembic's ``op``
over SQLAlchemy table definitions (column types in :mod:`monolith.database.schema`), so
SQLAlchemy renders each database's DDL and a schema change is written once. Versions apply
in number order, each once (numbers may have gaps).

This module reads the files and the ``schema_migrations`` table with the app's own drivers;
SQLAlchemy and Alembic load only in :mod:`monolith.database.migrator`, and only when there is
something to apply or revert (a start with nothing pending never imports them). The runner
takes a lock first (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory
lock) and does all its steps in that one transaction, so when several workers or ``monolith
migrate`` runs start at the same moment, one applies and the others find the work done. An
applied migration whose file changed afterwards stops everything with an error: silently
diverging schemas are worse than a refused start.

Databases made before migrations were written once recorded 0001-0005 with the checksums of
the SQL files of that time (:data:`LEGACY_CHECKSUMS`); those are recognized and re-stamped
with the checksums of the files that replaced them. SQL files are no longer read: a
``NNNN_*.sql`` left in ``migrations/`` stops everything with an error saying what to do.
"""

from __future__ import annotations

from monolith.database.base import Database, Queries
from monolith.database.versions import (
    LEGACY_CHECKSUMS,
    LOCK_KEY,
    Migration,
    MigrationStatus,
    Step,
    available,
    check,
    parse_target,
)

__all__ = [
    "LEGACY_CHECKSUMS",
    "LOCK_KEY",
    "Migration",
    "MigrationStatus",
    "Step",
    "available",
    "check",
    "migrate",
    "migrate_to",
    "parse_target",
    "pending",
    "status",
]


async def _recorded(db: Queries, dialect: str) -> dict[int, tuple[str, str, float]]:
    """``schema_migrations`` as it is, read without creating anything."""
    if dialect == "postgresql":
        exists = await db.fetch_val("SELECT to_regclass('schema_migrations') IS NOT NULL")
    else:
        exists = await db.fetch_val(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
    if not exists:
        return {}
    rows = await db.fetch_all("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {int(r[0]): (str(r[1]), str(r[2]), float(r[3])) for r in rows}


async def status(db: Database) -> list[MigrationStatus]:
    """Every known migration, applied or pending, with whether its checksum still matches
    (a legacy SQL checksum matches). Reads only: creates no table."""
    known = available()
    applied = await _recorded(db, db.dialect)
    result = []
    for mig in known:
        record = applied.get(mig.version)
        result.append(
            MigrationStatus(
                version=mig.version,
                name=mig.name,
                applied_at=record[2] if record else None,
                checksum_ok=record is None
                or record[1] == mig.checksum
                or record[1] in LEGACY_CHECKSUMS.get(mig.version, frozenset()),
            )
        )
    return result


async def pending(db: Database) -> list[Migration]:
    """Migrations not yet applied (without applying them)."""
    applied = await _recorded(db, db.dialect)
    return [m for m in available() if m.version not in applied]


async def migrate_to(db: Database, target: int | None = None) -> list[Step]:
    """Bring the database to version ``target`` (None: the last), up or down; returns the
    steps this call took (often none)."""
    known = available()
    goal = (known[-1].version if known else 0) if target is None else target
    applied = await _recorded(db, db.dialect)
    wanted = {m.version for m in known if m.version <= goal}
    if set(applied) == wanted and not check(known, applied):
        return []  # nothing to do: SQLAlchemy and Alembic are never loaded
    # SQLAlchemy and Alembic (measured 2.2-2.7 s of imports on the loaded 2-core test machine,
    # against 2.7-7.5 s for all of monolith.app) load only when a migration must run, so the
    # request path and an up-to-date start never import them: a measured start-up cost.
    from monolith.database.migrator import run

    return await run(db, known, goal)


async def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration; returns those this call applied (often none)."""
    return [s.migration for s in await migrate_to(db) if s.direction == "up"]
