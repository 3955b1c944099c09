"""The ``Database`` interface and its value types; backends implement it.

The app writes one SQL dialect: ``?`` placeholders, ``RETURNING``, ``ON CONFLICT``, times as
float epoch seconds passed from Python (never ``now()`` in SQL). Where SQLite and PostgreSQL
differ (placeholders, locking, DDL), the difference lives in the backend module.

Reads go through :meth:`Database.fetch_one`/:meth:`Database.fetch_all`; every write goes
through :meth:`Database.transaction`, which on SQLite is ``BEGIN IMMEDIATE`` on the process's
one writer connection and may share its commit with other transactions (group commit). A
transaction's ``__aexit__`` returns only once its writes are durable.

This module must never import ``aiosqlite`` or ``asyncpg``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import msgspec

from monolith.errors import BackupError

Params = Sequence[Any]

#: When set (a time on the running loop's clock), every write transaction of this context must
#: have the database's write lock by then, or it raises :class:`~monolith.errors.DatabaseBusy`
#: having changed nothing (``MONOLITH_WRITE_TIMEOUT``: one deadline for a write request).
write_deadline: ContextVar[float | None] = ContextVar("write_deadline", default=None)
#: ``progress(done, total)`` during a backup, in pages (or bytes) copied so far.
BackupProgress = Callable[[int, int], None]


class Row(Protocol):
    """A result row, ``row["name"]`` or ``row[0]``: ``sqlite3.Row`` and ``asyncpg.Record`` are."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


S = TypeVar("S", bound=msgspec.Struct)


def row_as(cls: type[S], row: Row) -> S:
    """A row as the msgspec struct ``cls``, typed for mypy: ``row_as(Note, row)``.

    Columns are matched to fields by name (select them under the fields' names; columns the
    struct does not name are ignored) and checked: a NULL in a field that is not optional, or
    a text in an ``int`` field, raises :class:`msgspec.ValidationError` instead of passing
    a wrong value on. ``Note(*row)`` also works but is unchecked and fails ``mypy --strict``.
    """
    return msgspec.convert({key: row[key] for key in row.keys()}, cls)  # noqa: SIM118 (a row iterates its values)


def rows_as(cls: type[S], rows: Iterable[Row]) -> list[S]:
    """Every row as the msgspec struct ``cls`` (see :func:`row_as`)."""
    return [row_as(cls, row) for row in rows]


class Queries(abc.ABC):
    """What both a database and an open transaction can run."""

    @abc.abstractmethod
    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""

    @abc.abstractmethod
    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""

    async def fetch_val(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


class Transaction(Queries):
    """A write transaction in progress; obtained from :meth:`Database.transaction`."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abc.abstractmethod
    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per parameter row."""

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Params]) -> None:
        """Insert many rows into ``table`` as fast as the backend can (bulk loads).

        Values of identity columns are kept. Default: one INSERT per row.
        """
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        marks = ", ".join("?" * len(columns))
        name = '"' + table.replace('"', '""') + '"'
        await self.execute_many(f"INSERT INTO {name} ({cols}) VALUES ({marks})", rows)

    def on_commit(self, callback: Any) -> None:
        """Call ``callback()`` (sync, no arguments) after this transaction is durable."""
        self._after_commit.append(callback)

    _after_commit: list[Any]


class Database(Queries):
    """One relational database: SQLite on a file, or PostgreSQL through a pool."""

    #: ``"sqlite"`` or ``"postgresql"``; for migrations and diagnostics, never for app branching.
    dialect: ClassVar[str]
    #: Where the data lives, for ``doctor``: ``"box"`` (a file on this machine) or ``"shared"``.
    scope: ClassVar[str]
    #: Called after every statement with ``(sql, seconds, rows)``: statement statistics.
    observer: Callable[[str, float, int], None] | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections. Idempotent."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close connections, waiting for writes in progress."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed on normal exit, rolled back on an exception."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction; returns the rows changed."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~monolith.errors.StateUnavailable` unless the database answers."""

    async def connection_limit(self) -> int | None:
        """How many connections the server admits for the app, or None where that is no limit
        (SQLite). ``doctor`` compares it with every instance's and worker's pools."""
        return None

    async def optimize(self) -> None:
        """Refresh the query planner's statistics (a daily job). Default: the server does it."""
        return None

    @abc.abstractmethod
    def describe(self) -> str:
        """A safe, one-line description (no password) for logs and ``doctor``."""

    async def fenced(self) -> str | None:
        """Why writes are refused (a move to another database), or None when they are not."""
        return None

    async def backup_to(self, target: Path, progress: BackupProgress | None = None) -> None:
        """An online, consistent copy of the whole database in the file ``target``.

        ``progress(done, total)`` is called as pages are copied (possibly from another thread).
        Backends without a built-in backup raise :class:`~monolith.errors.BackupError` saying
        which tool to use instead.
        """
        del target, progress
        raise BackupError(f"{self.describe()}: no built-in backup for {self.dialect}")

    async def iterate(self, sql: str, params: Params = (), batch: int = 1000) -> AsyncIterator[Row]:
        """Rows of a large query in batches; the SQL must end with ``ORDER BY`` a unique key."""
        offset = 0
        while True:
            rows = await self.fetch_all(f"{sql} LIMIT {int(batch)} OFFSET {offset}", params)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            offset += batch
