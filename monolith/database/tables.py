"""Tables as the SQLite-to-PostgreSQL transfer sees them: read, matched, converted, checksummed.

- :class:`SQLiteSource`: a SQLite file opened read-only, in one read transaction, listing its
  data tables (from ``sqlite_master``; SQLite's own tables, ``schema_migrations`` and virtual
  tables with their shadow tables are skipped) parents before children.
- :class:`TablePlan`: one source table matched to the target's columns, with the conversion
  of each value (:mod:`monolith.database.values`) and the SQL to read and write it.
- Checksums: per table, the row count and the sum (mod 2**256) of the SHA-256 of each row's
  canonical text, computed the same way on both sides. Why a sum and not a hash over rows in
  key order: PostgreSQL orders text keys by the database's collation and SQLite by bytes, so
  the same rows come back in different orders; the sum needs no order and still moves when
  any value of any row changes, or when a row is missing or doubled.

This module must never write to the source.
"""

from __future__ import annotations

import graphlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import msgspec

from monolith.database.base import Database, Queries
from monolith.database.values import Canon, Convert, canon_for, converter
from monolith.errors import MonolithError

_MOD = 1 << 256
_SKIPPED = {"schema_migrations"}


class TransferError(MonolithError):
    """The data cannot be moved as asked; the message says why and what to do."""


class ProgressBar(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


def quote(name: str) -> str:
    """An identifier quoted for SQL (both dialects use double quotes)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class SourceTable:
    name: str
    columns: tuple[str, ...]
    #: The primary key's columns in key order; () when the table has none.
    key: tuple[str, ...]
    #: Tables this one's foreign keys point at (itself excluded).
    parents: frozenset[str]


@dataclass(frozen=True, slots=True)
class Checksum:
    rows: int
    digest: str


@dataclass(frozen=True, slots=True)
class TableCheck:
    table: str
    source: Checksum
    target: Checksum

    @property
    def ok(self) -> bool:
        return self.source == self.target


class Summer:
    """The order-free checksum of a table, fed one converted row at a time."""

    __slots__ = ("_canons", "rows", "total")
    _encode = msgspec.json.Encoder().encode

    def __init__(self, canons: Sequence[Canon]) -> None:
        self._canons = canons
        self.rows = 0
        self.total = 0

    def add(self, row: Sequence[Any]) -> None:
        text = self._encode([canon(v) for canon, v in zip(self._canons, row, strict=True)])
        self.total = (self.total + int.from_bytes(hashlib.sha256(text).digest())) % _MOD
        self.rows += 1

    def result(self) -> Checksum:
        return Checksum(self.rows, f"{self.total:064x}")


@dataclass(frozen=True, slots=True)
class TablePlan:
    """One source table matched to its target columns: SQL, conversions, checksum rules."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    converts: tuple[Convert, ...]
    canons: tuple[Canon, ...]
    types: tuple[str, ...]

    @property
    def select(self) -> str:
        return f"SELECT {', '.join(map(quote, self.columns))} FROM {quote(self.name)}"

    @property
    def insert(self) -> str:
        marks = ", ".join("?" * len(self.columns))
        cols = ", ".join(map(quote, self.columns))
        # OVERRIDING SYSTEM VALUE keeps the ids even where a column is GENERATED ALWAYS.
        return f"INSERT INTO {quote(self.name)} ({cols}) OVERRIDING SYSTEM VALUE VALUES ({marks})"

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        try:
            return tuple(f(v) for f, v in zip(self.converts, row, strict=True))
        except (ValueError, UnicodeDecodeError):
            for col, typ, f, v in zip(self.columns, self.types, self.converts, row, strict=True):
                try:
                    f(v)
                except (ValueError, UnicodeDecodeError):
                    raise TransferError(
                        f"{self.name}.{col}: cannot store {v!r} in a PostgreSQL {typ} column"
                    ) from None
            raise

    def summer(self) -> Summer:
        return Summer(self.canons)


class SQLiteSource:
    """A SQLite file opened read-only, inside one read transaction (a consistent snapshot)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> SQLiteSource:
        if not self.path.is_file():
            raise TransferError(f"no SQLite database at {self.path}")
        uri = self.path.absolute().as_uri() + "?mode=ro"
        self._conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        await self._conn.execute("BEGIN")  # the first read below fixes the snapshot
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _c(self) -> aiosqlite.Connection:
        assert self._conn is not None, "use SQLiteSource in 'async with'"
        return self._conn

    async def _all(self, sql: str) -> list[Any]:
        return list(await self._c().execute_fetchall(sql))

    async def applied_migrations(self) -> set[int]:
        if not await self._all("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"):
            return set()
        return {int(r[0]) for r in await self._all("SELECT version FROM schema_migrations")}

    async def tables(self) -> list[SourceTable]:
        """The data tables, parents before children."""
        rows = await self._all("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        virtual = [n for n, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
        found: dict[str, SourceTable] = {}
        for name, _ in rows:
            if name.startswith("sqlite_") or name in _SKIPPED or name in virtual:
                continue
            if any(name.startswith(v + "_") for v in virtual):  # FTS shadow tables
                continue
            info = await self._all(f"PRAGMA table_info({quote(name)})")
            keyed = sorted((r[5], r[1]) for r in info if r[5])
            fks = await self._all(f"PRAGMA foreign_key_list({quote(name)})")
            found[name] = SourceTable(
                name=name,
                columns=tuple(r[1] for r in info),
                key=tuple(col for _, col in keyed),
                parents=frozenset(r[2] for r in fks if r[2] != name),
            )
        return [found[n] for n in dependency_order(found.values())]

    async def count(self, table: str) -> int:
        return int((await self._all(f"SELECT COUNT(*) FROM {quote(table)}"))[0][0])

    async def batches(self, plan: TablePlan, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The table's rows as converted for the target, ``size`` at a time."""
        async with self._c().execute(plan.select) as cursor:
            while rows := await cursor.fetchmany(size):
                yield [plan.convert(r) for r in rows]


def dependency_order(tables: Iterable[SourceTable]) -> list[str]:
    """Table names with every table after the tables its foreign keys point at."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    names = set()
    for table in sorted(tables, key=lambda t: t.name):
        names.add(table.name)
        sorter.add(table.name, *sorted(table.parents))
    try:
        return [n for n in sorter.static_order() if n in names]
    except graphlib.CycleError as exc:
        raise TransferError(f"tables reference each other in a cycle: {exc.args[1]}") from None


async def target_types(db: Queries) -> dict[str, dict[str, str]]:
    """Every table of the target's current schema: {table: {column: data type}}."""
    rows = await db.fetch_all(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )
    types: dict[str, dict[str, str]] = {}
    for row in rows:
        types.setdefault(row[0], {})[row[1]] = row[2]
    return types


def make_plans(
    tables: Sequence[SourceTable], types: Mapping[str, Mapping[str, str]]
) -> list[TablePlan]:
    """Each source table matched to the target's; a table or column missing there is refused."""
    plans = []
    for table in tables:
        columns = types.get(table.name)
        if columns is None:
            raise TransferError(
                f"table {table.name} is in the SQLite database but not in the target; "
                "both must be migrated by the same version of monolith"
            )
        missing = [c for c in table.columns if c not in columns]
        if missing:
            raise TransferError(f"columns {table.name}.{missing} are not in the target")
        kinds = tuple(columns[c] for c in table.columns)
        plans.append(
            TablePlan(
                name=table.name,
                columns=table.columns,
                key=table.key,
                converts=tuple(map(converter, kinds)),
                canons=tuple(map(canon_for, kinds)),
                types=kinds,
            )
        )
    return plans


async def target_rows(db: Database, plan: TablePlan, size: int) -> AsyncIterator[list[Any]]:
    """Every row of a target table, by keyset pages on the primary key (offsets without one)."""
    if not plan.key:
        batch: list[Any] = []
        async for row in db.iterate(f"{plan.select} ORDER BY {_all_columns(plan)}", (), size):
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    key = ", ".join(map(quote, plan.key))
    after: tuple[Any, ...] = ()
    while True:
        where = f" WHERE ({key}) > ({', '.join('?' * len(after))})" if after else ""
        rows = await db.fetch_all(f"{plan.select}{where} ORDER BY {key} LIMIT {int(size)}", after)
        if rows:
            yield rows
        if len(rows) < size:
            return
        after = tuple(rows[-1][c] for c in plan.key)


def _all_columns(plan: TablePlan) -> str:
    return ", ".join(map(quote, plan.columns))


async def target_checksum(
    db: Database, plan: TablePlan, size: int, progress: ProgressBar | None = None
) -> Checksum:
    summer = plan.summer()
    async for rows in target_rows(db, plan, size):
        for row in rows:
            summer.add(tuple(row))
        if progress is not None:
            progress.advance(len(rows))
    return summer.result()


async def source_checksum(
    source: SQLiteSource, plan: TablePlan, size: int, progress: ProgressBar | None = None
) -> Checksum:
    summer = plan.summer()
    async for rows in source.batches(plan, size):
        for row in rows:
            summer.add(row)
        if progress is not None:
            progress.advance(len(rows))
    return summer.result()
