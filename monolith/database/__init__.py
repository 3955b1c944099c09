"""Relational databases: the interface (:mod:`.base`), one module per backend (:mod:`.sqlite`,
:mod:`.postgres`), migrations, backups and the SQLite-to-PostgreSQL transfer.

:func:`open_database` is the one place a URL picks a backend. The public face is
:mod:`monolith.db`.
"""

from __future__ import annotations

from typing import Any

from monolith.database.base import Database
from monolith.database.sqlite import SQLiteDatabase
from monolith.errors import ConfigError


def open_database(url: str, **options: Any) -> Database:
    """The one place a URL picks a database backend.

    ``sqlite:///relative/or/absolute/path.db`` (``sqlite:////abs`` also accepted) or
    ``postgresql://user@host:port/name``. Options are backend settings such as
    ``synchronous``, ``busy_timeout_ms``, ``readers``, ``pool_size``.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteDatabase(sqlite_path(url), **options)
    if scheme in ("postgresql", "postgres"):
        try:  # asyncpg is an optional dependency (monolith[postgres])
            from monolith.database.postgres import PostgresDatabase
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("PostgreSQL needs asyncpg: pip install 'monolith[postgres]'") from exc
        return PostgresDatabase(url, **options)
    raise ConfigError(
        f"MONOLITH_DATABASE_URL: unknown scheme {scheme!r}; use sqlite:///path or postgresql://..."
    )


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///path`` URL."""
    path = url.split(":", 1)[1]
    if not path.startswith("///"):
        raise ConfigError(f"SQLite URL must look like sqlite:///path/to/file.db, got {url!r}")
    return path[3:]
