"""Versioned, checksummed SQL migrations for both backends, applied once under a lock.

Files live in ``migrations/<dialect>/NNNN_name.sql``; both dialects carry the same versions.
All pending migrations apply in one write transaction that first takes a lock (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so when several workers
or ``monolith migrate`` runs start at the same moment, one applies and the others find the
work done. An applied migration whose file changed afterwards stops everything with an error:
silently diverging schemas are worse than a refused start.

Why not a migration library: the well-kept ones either sit on SQLAlchemy (Alembic) or on
DB-API drivers (yoyo), which would add a second driver per database just for this.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources

from monolith.database.base import Database, Transaction
from monolith.errors import MigrationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D6F6E6F  # "mono": the advisory lock id on PostgreSQL


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: float | None
    checksum_ok: bool


def available(dialect: str) -> list[Migration]:
    """The migration files shipped for a dialect, in version order."""
    folder = resources.files("monolith.database") / "migrations" / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two {dialect} migrations share a version: {versions}")
    return found


def split_statements(script: str) -> list[str]:
    """A SQL script as single statements (SQLite runs one per call; triggers stay whole)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {buffer[:80]!r}")
    return statements


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at {real} NOT NULL
)
"""


async def _lock_and_prepare(db: Database, tx: Transaction) -> None:
    if db.dialect == "postgresql":
        await tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        await tx.execute(_CREATE_TABLE.format(real="DOUBLE PRECISION"))
    else:  # SQLite: BEGIN IMMEDIATE already holds the database's write lock
        await tx.execute(_CREATE_TABLE.format(real="REAL"))


async def _applied(tx: Transaction) -> dict[int, tuple[str, str, float]]:
    rows = await tx.fetch_all("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {int(r[0]): (r[1], r[2], float(r[3])) for r in rows}


def _check(known: list[Migration], applied: dict[int, tuple[str, str, float]]) -> None:
    by_version = {m.version: m for m in known}
    for version, (name, checksum, _) in sorted(applied.items()):
        mig = by_version.get(version)
        if mig is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} which this code does not know; "
                "is an older version of monolith running against a newer database?"
            )
        if mig.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{name}.sql changed after it was applied "
                f"(recorded {checksum[:12]}, file {mig.checksum[:12]}); add a new migration instead"
            )


async def migrate(db: Database) -> list[Migration]:
    """Apply every pending migration; returns those this call applied (often none)."""
    known = available(db.dialect)
    done: list[Migration] = []
    async with db.transaction() as tx:
        await _lock_and_prepare(db, tx)
        applied = await _applied(tx)
        _check(known, applied)
        for mig in known:
            if mig.version in applied:
                continue
            if db.dialect == "postgresql":
                await tx.execute(mig.sql)
            else:
                for statement in split_statements(mig.sql):
                    await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (mig.version, mig.name, mig.checksum, time.time()),
            )
            done.append(mig)
    return done


async def status(db: Database) -> list[MigrationStatus]:
    """Every known migration, applied or pending, with whether its checksum still matches."""
    known = available(db.dialect)
    async with db.transaction() as tx:
        await _lock_and_prepare(db, tx)
        applied = await _applied(tx)
    result = []
    for mig in known:
        record = applied.get(mig.version)
        result.append(
            MigrationStatus(
                version=mig.version,
                name=mig.name,
                applied_at=record[2] if record else None,
                checksum_ok=record is None or record[1] == mig.checksum,
            )
        )
    return result


async def pending(db: Database) -> list[Migration]:
    """Migrations not yet applied (without applying them)."""
    states = await status(db)
    todo = {s.version for s in states if s.applied_at is None}
    return [m for m in available(db.dialect) if m.version in todo]
