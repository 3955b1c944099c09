"""PostgreSQL backend on asyncpg with a connection pool.

The app's SQL uses ``?`` placeholders; they become ``$1, $2, ...`` here, once per distinct
statement (cached). asyncpg's own prepared-statement cache then makes repeated statements cheap.

Every connection of the pool runs with server-side limits: ``statement_timeout`` (a runaway
query is cancelled by the server, not only abandoned by the client) and
``idle_in_transaction_session_timeout`` (a transaction left open by a stuck process releases
its locks).

PgBouncer in transaction mode: set ``direct_url`` (``MONOLITH_DB_DIRECT_URL``) to a direct
connection to PostgreSQL and point the database URL at PgBouncer. The pool then runs with
asyncpg's prepared-statement cache off (a prepared statement lives on one server connection,
which transaction pooling does not keep), sends no startup settings (PgBouncer refuses
unknown ones: set the two timeouts on the role instead, ``ALTER ROLE ... SET``), and
``LISTEN`` and the job runner's election lock, which need one session for as long as they
last, use ``direct_url``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from monolith.database.base import BackupProgress, Database, Params, Row, Transaction
from monolith.errors import (
    BackupError,
    ConfigError,
    DatabaseBusy,
    DatabaseUnavailable,
    IntegrityViolation,
    NotStarted,
)

StatementObserver = Callable[[str, float, int], None]

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?")


@functools.lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """``?`` placeholders as ``$n``, leaving quoted strings and comments alone."""
    counter = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal counter
        if m.group(0) != "?":
            return m.group(0)
        counter += 1
        return f"${counter}"

    return _TOKENS.sub(repl, sql)


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    TimeoutError,
)


def translate(exc: BaseException) -> BaseException:
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        return IntegrityViolation(str(exc))
    if isinstance(
        exc, asyncpg.exceptions.LockNotAvailableError | asyncpg.exceptions.DeadlockDetectedError
    ):
        return DatabaseBusy(str(exc))
    if isinstance(exc, _UNAVAILABLE):
        return DatabaseUnavailable(f"PostgreSQL is unavailable: {exc.__class__.__name__}")
    return exc


def _count(status: str) -> int:
    """Rows changed, from a command tag like ``UPDATE 3`` or ``INSERT 0 1``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Tx(Transaction):
    __slots__ = ("_after_commit", "_conn", "_db")

    def __init__(self, db: PostgresDatabase, conn: Any) -> None:
        self._db = db
        self._conn = conn
        self._after_commit = []

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._db._fetch(self._conn, sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._db._fetch(self._conn, sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        started = time.perf_counter()
        try:
            status = await self._conn.execute(to_pg(sql), *params)
        except Exception as exc:
            raise translate(exc) from exc
        count = _count(status)
        self._db._observe(sql, time.perf_counter() - started, count)
        return count

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        rows = list(rows)
        started = time.perf_counter()
        try:
            await self._conn.executemany(to_pg(sql), rows)
        except Exception as exc:
            raise translate(exc) from exc
        self._db._observe(sql, time.perf_counter() - started, len(rows))

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Params]) -> None:
        """PostgreSQL's COPY (binary): several times faster than INSERTs for a bulk load, and
        it keeps the values given for identity columns (what OVERRIDING SYSTEM VALUE does)."""
        started = time.perf_counter()
        try:
            await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))
        except Exception as exc:
            raise translate(exc) from exc
        self._db._observe(f"COPY {table}", time.perf_counter() - started, len(rows))


class PostgresDatabase(Database):
    dialect = "postgresql"
    scope = "shared"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        synchronous: str = "",  # SQLite settings, accepted for a uniform factory
        busy_timeout_ms: int = 5000,
        readers: int = 0,
        command_timeout: float = 30.0,
        statement_timeout_ms: int = 30_000,
        idle_in_transaction_timeout_ms: int = 60_000,
        direct_url: str = "",
    ) -> None:
        del synchronous, readers
        self.url = url
        #: Where LISTEN and the election connect: PostgreSQL itself, never a pooler.
        self.direct_url = direct_url or url
        #: The pool goes through PgBouncer (transaction mode): no prepared-statement cache.
        self.pooled = bool(direct_url) and direct_url != url
        self.server_settings = {
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(idle_in_transaction_timeout_ms),
        }
        self.pool_size = pool_size
        self.connect_timeout = max(1.0, busy_timeout_ms / 1000)
        self.command_timeout = command_timeout
        self.observer: StatementObserver | None = None
        self._pool: Any = None

    def describe(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    async def backup_to(self, target: Path, progress: BackupProgress | None = None) -> None:
        # pg_dump is PostgreSQL's own consistent online backup, and it must match the server's
        # version; wrapping it here would only hide the error messages that matter.
        del target, progress
        raise BackupError(
            "PostgreSQL is backed up with its own tool, pg_dump: "
            'pg_dump --format=custom --file=monolith.dump "$MONOLITH_DATABASE_URL" '
            "(restore with pg_restore --dbname=...)"
        )

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                **(
                    {"statement_cache_size": 0}
                    if self.pooled
                    else {"server_settings": self.server_settings}
                ),
            )
        except asyncpg.exceptions.InvalidCatalogNameError:
            name = urlsplit(self.url).path.lstrip("/")
            raise ConfigError(
                f"MONOLITH_DATABASE_URL names the PostgreSQL database {name!r}, which does not "
                f"exist on {self.describe()}; create it (createdb {name}) or fix the URL"
            ) from None
        except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
            raise ConfigError(f"PostgreSQL refused the login: {exc}") from None
        except Exception as exc:
            raise translate(exc) from exc

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _require(self) -> Any:
        if self._pool is None:
            raise NotStarted("PostgresDatabase used before start(); the app lifespan starts it")
        return self._pool

    def _observe(self, sql: str, seconds: float, rows: int) -> None:
        if self.observer is not None:
            self.observer(sql, seconds, rows)

    async def _fetch(self, conn: Any, sql: str, params: Params) -> list[Row]:
        started = time.perf_counter()
        try:
            rows: list[Row] = await conn.fetch(to_pg(sql), *params)
        except Exception as exc:
            raise translate(exc) from exc
        self._observe(sql, time.perf_counter() - started, len(rows))
        return rows

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        pool = self._require()
        try:
            async with pool.acquire() as conn:
                return await self._fetch(conn, sql, params)
        except Exception as exc:
            raise translate(exc) from exc

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    async def connection_limit(self) -> int | None:
        # The connections reserved for superusers are not the app's to use.
        value = await self.fetch_val(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
        )
        return int(value)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        pool = self._require()
        try:
            conn = await pool.acquire()
        except Exception as exc:
            raise translate(exc) from exc
        try:
            txn = conn.transaction()
            try:
                await txn.start()
            except Exception as exc:
                raise translate(exc) from exc
            tx = _Tx(self, conn)
            try:
                yield tx
            except BaseException:
                try:
                    await txn.rollback()
                except Exception:  # noqa: S110 - the body's error is the one to report
                    pass
                raise
            try:
                await txn.commit()
            except Exception as exc:
                raise translate(exc) from exc
        finally:
            try:
                await pool.release(conn)
            except Exception:  # noqa: S110 - a broken connection is dropped by the pool
                pass
        for callback in tx._after_commit:
            callback()
