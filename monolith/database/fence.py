"""The write fence of a SQLite database: while it stands, every write fails, in every process.

``monolith migrate-data`` fences the source before its final copy, so that nothing can commit
on SQLite after the rows it copies were read: a write acknowledged to a client is in the copy,
or was refused with a 503. The fence is state in the database file itself, so every process on
the box (every ``serve`` worker, ``monolith worker``, a one-shot command) sees it at once, with
no message to send and nothing to poll:

- one ``BEFORE INSERT/UPDATE/DELETE`` trigger per table, named ``monolith_fence_*``, that
  aborts the statement with ``monolith-fenced: <why>``; the SQLite backend turns that error into
  :class:`~monolith.errors.WritesFenced` (HTTP 503 with ``Retry-After``);
- the triggers are created in one ``BEGIN IMMEDIATE`` transaction: once it commits, every write
  transaction that started before it has committed (it waited for the write lock), and every
  later one fails. A prepared statement of another connection is re-prepared by SQLite when it
  sees the schema change, so it meets the triggers too.

Why triggers and not a row checked by the app: they cost a write nothing while there is no
fence (no trigger exists, no statement runs), and they cannot be stepped around by a process
that checked a cached flag a moment too early. Reads are not touched.

After a successful move the fence stays, with a message naming where the data went: nothing is
written to SQLite again until the app runs on PostgreSQL. :func:`lift` removes it when a move
is abandoned (``monolith migrate-data --unfence``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from monolith.errors import DatabaseBusy, DatabaseUnavailable

PREFIX = "monolith-fenced: "
TRIGGER = "monolith_fence_"
_OPS = ("INSERT", "UPDATE", "DELETE")

MOVING = (
    "writes are paused while this database is moved to PostgreSQL (monolith migrate-data); "
    "try again shortly"
)


def moved_message(target: str) -> str:
    return (
        f"this SQLite database was moved to {target}; writes go there now: set "
        "MONOLITH_DATABASE_URL to it and restart (monolith migrate-data --unfence lifts this "
        "fence if the move is abandoned)"
    )


def fence_message(error: str) -> str | None:
    """The fence's message when ``error`` (a SQLite error's text) comes from a fence."""
    index = error.find(PREFIX)
    return None if index < 0 else error[index + len(PREFIX) :]


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    if not path.exists():
        raise DatabaseUnavailable(f"no SQLite database at {path}")
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    virtual = [n for n, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
    return [
        name
        for name, _ in rows
        if not name.startswith("sqlite_")
        and name not in virtual
        and not any(name.startswith(v + "_") for v in virtual)  # FTS shadow tables
    ]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _triggers(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
        (TRIGGER + "%",),
    ).fetchall()
    return [r[0] for r in rows]


def _set(path: Path, message: str | None, busy_timeout_ms: int) -> None:
    conn = _connect(path, busy_timeout_ms)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for name in _triggers(conn):
                conn.execute(f"DROP TRIGGER {_quote(name)}")
            if message is not None:
                raise_it = f"SELECT RAISE(ABORT, {_literal(PREFIX + message)});"
                for number, table in enumerate(_tables(conn)):
                    for op in _OPS:
                        name = f"{TRIGGER}{number}_{op.lower()}"
                        conn.execute(
                            f"CREATE TRIGGER {_quote(name)} BEFORE {op} ON {_quote(table)} "
                            f"BEGIN {raise_it} END"
                        )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseBusy(f"{path}: the write lock stayed taken; try again") from exc
        raise DatabaseUnavailable(f"{path}: {exc}") from exc
    finally:
        conn.close()


def _read(path: Path) -> str | None:
    conn = _connect(path, 5000)
    try:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? LIMIT 1",
            (TRIGGER + "%",),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else fence_message(str(row[0]).replace("''", "'").rsplit("'", 1)[0])


async def put_up(path: str | Path, message: str = MOVING, *, busy_timeout_ms: int = 30000) -> None:
    """Fence the database at ``path`` (or replace the fence's message); returns once it holds."""
    await asyncio.to_thread(_set, Path(path), message, busy_timeout_ms)


async def lift(path: str | Path, *, busy_timeout_ms: int = 30000) -> bool:
    """Remove the fence; whether there was one."""
    had = await current(path) is not None
    await asyncio.to_thread(_set, Path(path), None, busy_timeout_ms)
    return had


async def current(path: str | Path) -> str | None:
    """The standing fence's message, or None when writes are open."""
    return await asyncio.to_thread(_read, Path(path))
