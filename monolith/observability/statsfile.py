"""The shared stats file: statement statistics and dashboard samples of every process on a box.

Why a SQLite file of its own (``$DATA_DIR/stats.db``) and not the app's database, the cache,
or the Prometheus files:

- The app's database on SQLite has one writer at a time; statistics flushed into it by every
  worker would queue behind (and in front of) orders and jobs. A separate file has its own
  lock, so a flush never delays an app write, and with WAL readers (``db top``, ``/admin``)
  never wait for a flush.
- It aggregates across processes the same way whatever the app's database or cache is, needs
  no service, and survives restarts like ``pg_stat_statements`` does.
- The Prometheus files are wiped at every start and keep no history; the cache may evict.

Each process writes at most once per flush interval in one short transaction (an upsert that
adds its deltas), through the standard library's ``sqlite3`` in a thread so the event loop
never waits on the file. Losing the last few seconds on a power cut is acceptable here
(``synchronous=NORMAL``). On PostgreSQL deployments across several boxes, each box keeps its
own file: the numbers are per box (``pg_stat_statements``, where loaded, is not).

Nothing here may raise into a request: callers catch ``sqlite3.Error`` and keep their deltas.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from monolith.files import private_file
from monolith.observability.statements import Order, Statement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS statements (
    query TEXT PRIMARY KEY,
    calls INTEGER NOT NULL,
    total REAL NOT NULL,
    max REAL NOT NULL,
    rows INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    slot INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
"""

_ORDER_SQL = {
    "total": "total DESC",
    "calls": "calls DESC",
    "mean": "total / calls DESC",
    "max": "max DESC",
}

StatementRow = tuple[str, int, float, float, int]


class StatsFile:
    """One SQLite file shared by every process of a box; each call opens its own connection."""

    def __init__(self, path: Path, *, busy_timeout: float = 2.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            if not self._ready:
                with self._lock:
                    private_file(self.path)
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.executescript(_SCHEMA)
                    self._ready = True
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    # -- statements ------------------------------------------------------------------------

    def add_statements(self, rows: Sequence[StatementRow], now: float | None = None) -> None:
        """Add one process's deltas: calls, total seconds and rows add up, max is the max."""
        if not rows:
            return
        stamp = time.time() if now is None else now
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO statements (query, calls, total, max, rows, first_seen, last_seen)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (query) DO UPDATE SET calls = calls + excluded.calls,"
                    " total = total + excluded.total, max = MAX(max, excluded.max),"
                    " rows = rows + excluded.rows, last_seen = excluded.last_seen",
                    [(*row, stamp, stamp) for row in rows],
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def top(self, limit: int = 20, order: Order = "total") -> list[Statement]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT query, calls, total, max, rows FROM statements"
                f" ORDER BY {_ORDER_SQL[order]}, query LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            Statement(
                query=q,
                calls=calls,
                total_ms=total * 1000,
                mean_ms=total * 1000 / calls if calls else 0.0,
                max_ms=mx * 1000,
                rows=n,
            )
            for q, calls, total, mx, n in rows
        ]

    def reset_statements(self) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM statements")

    # -- dashboard samples -----------------------------------------------------------------

    def has_sample(self, slot: int) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT 1 FROM samples WHERE slot = ?", (slot,)).fetchone()
        return row is not None

    def add_sample(self, slot: int, ts: float, data: str, keep: int) -> bool:
        """Store the sample of ``slot`` unless another process already did; keep ``keep``."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = conn.execute(
                    "INSERT OR IGNORE INTO samples (slot, ts, data) VALUES (?, ?, ?)",
                    (slot, ts, data),
                ).rowcount
                conn.execute("DELETE FROM samples WHERE slot <= ?", (slot - keep,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return added == 1

    def samples(self, since: float) -> list[tuple[float, str]]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return conn.execute(
                "SELECT ts, data FROM samples WHERE ts >= ? ORDER BY slot", (since,)
            ).fetchall()
