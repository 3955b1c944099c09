"""Statement statistics, the ``pg_stat_statements`` view for every backend.

The database calls :meth:`StatementStats.observe` after each statement (its ``observer`` hook)
with the SQL, the seconds it took and its rows. The statement is normalized (literals become
``?``, ``IN (?, ?, ?)`` becomes ``IN (...)``, whitespace collapses) so one query with
different values is one row, and its calls, total and max time and rows are added up in
memory. Every few seconds, and when the process stops, the process adds what it gathered to
the shared stats file (:mod:`monolith.observability.statsfile`), so the view covers every
worker. On PostgreSQL with ``pg_stat_statements`` loaded, :func:`top_statements` reads that
instead (it also sees other clients and other boxes).

``observe`` runs on every statement: it must stay a cached normalization and a dict update,
and must never do I/O or raise.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from monolith.database.base import Database
from monolith.logs import get_logger
from monolith.observability.metrics import Metrics

Order = Literal["total", "calls", "mean", "max"]
ORDERS: tuple[Order, ...] = ("total", "calls", "mean", "max")

log = get_logger("monolith.db")

_TOKENS = re.compile(
    r"""
      (?P<string>'(?:[^']|'')*')
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<blob>\b[xX]'[0-9a-fA-F]*')
    | (?P<number>(?<![\w$])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b)
    | (?P<param>\$\d+|\?\d*)
    | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL,
)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_LISTS = re.compile(r"\(\.\.\.\)(?:\s*,\s*\(\.\.\.\))+")
_VERBS = frozenset({"select", "insert", "update", "delete", "with"})


def _token(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "ident":
        return m.group(0)
    if kind == "space" or kind == "comment":
        return " "
    return "?"


@functools.lru_cache(maxsize=4096)
def normalize(sql: str) -> tuple[str, str]:
    """``(normalized SQL, verb)``: literals and placeholders out, lists folded, spaces single."""
    text = _TOKENS.sub(_token, sql).strip()
    text = _LISTS.sub("(...)", _LIST.sub("(...)", text))
    text = re.sub(r" {2,}", " ", text).rstrip(" ;")
    first = text.split(" ", 1)[0].lower()
    return text, first if first in _VERBS else "other"


class _Entry:
    __slots__ = ("calls", "max", "rows", "total")

    def __init__(self) -> None:
        self.calls = 0
        self.total = 0.0
        self.max = 0.0
        self.rows = 0


class StatementStats:
    """This process's statement numbers since the last flush, and the per-verb counters."""

    def __init__(self, metrics: Metrics | None = None, *, slow_seconds: float = 0.5) -> None:
        self.metrics = metrics
        self.slow_seconds = slow_seconds
        self.pending: dict[str, _Entry] = {}
        self._verbs: dict[str, tuple[Any, Any]] = {}

    def observe(self, sql: str, seconds: float, rows: int) -> None:
        text, verb = normalize(sql)
        entry = self.pending.get(text)
        if entry is None:
            entry = self.pending[text] = _Entry()
        entry.calls += 1
        entry.total += seconds
        entry.rows += rows
        if seconds > entry.max:
            entry.max = seconds
        if self.metrics is not None:
            counters = self._verbs.get(verb)
            if counters is None:
                counters = self._verbs[verb] = (
                    self.metrics.db_statements.labels(verb),
                    self.metrics.db_seconds.labels(verb),
                )
            counters[0].inc()
            counters[1].inc(seconds)
            if seconds >= self.slow_seconds:
                self.metrics.db_slow.labels(verb).inc()
        if seconds >= self.slow_seconds:
            log.warning(
                "slow statement", statement=text[:500], duration_ms=round(seconds * 1000, 1)
            )

    def take(self) -> list[tuple[str, int, float, float, int]]:
        """Everything gathered since the last call, as rows for the stats file."""
        taken, self.pending = self.pending, {}
        return [(q, e.calls, e.total, e.max, e.rows) for q, e in taken.items()]

    def put_back(self, rows: list[tuple[str, int, float, float, int]]) -> None:
        """Rows that could not be saved: keep them for the next flush."""
        for query, calls, total, max_seconds, n in rows:
            entry = self.pending.get(query)
            if entry is None:
                entry = self.pending[query] = _Entry()
            entry.calls += calls
            entry.total += total
            entry.rows += n
            entry.max = max(entry.max, max_seconds)


@dataclass(frozen=True, slots=True)
class Statement:
    """One row of the view; times in milliseconds."""

    query: str
    calls: int
    total_ms: float
    mean_ms: float
    max_ms: float
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "calls": self.calls,
            "total_ms": round(self.total_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "rows": self.rows,
        }


_PG_ORDER = {
    "total": "total_exec_time",
    "calls": "calls",
    "mean": "mean_exec_time",
    "max": "max_exec_time",
}


async def pg_stat_statements(db: Database, limit: int, order: Order) -> list[Statement] | None:
    """The top of ``pg_stat_statements`` for this database, or None where it is not loaded.

    This reads the server's own view: it counts every client of the database, on every box.
    """
    if db.dialect != "postgresql":  # diagnostics: the one place that asks which server it is
        return None
    try:
        rows = await db.fetch_all(
            "SELECT query, calls, total_exec_time, mean_exec_time, max_exec_time, rows"
            " FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" ORDER BY {_PG_ORDER[order]} DESC LIMIT ?",
            (limit,),
        )
    except Exception:
        # Not installed in this database, or not in shared_preload_libraries: our own numbers.
        return None
    return [
        Statement(
            query=" ".join(str(r["query"]).split()),
            calls=int(r["calls"]),
            total_ms=float(r["total_exec_time"]),
            mean_ms=float(r["mean_exec_time"]),
            max_ms=float(r["max_exec_time"]),
            rows=int(r["rows"]),
        )
        for r in rows
    ]
