"""The database, as application code sees it: the :class:`Database` interface and
:func:`open_database`, the one place a URL picks a backend.

The app writes one SQL dialect: ``?`` placeholders, ``RETURNING``, ``ON CONFLICT``, times as
float epoch seconds passed from Python (never ``now()`` in SQL). Where SQLite and PostgreSQL
differ (placeholders, locking, DDL), the difference lives in the backend module under
:mod:`monolith.database`.

Reads go through :meth:`Database.fetch_one`/:meth:`Database.fetch_all`; every write goes
through :meth:`Database.transaction`, which on SQLite is ``BEGIN IMMEDIATE`` on the process's
one writer connection and may share its commit with other transactions (group commit). A
transaction's ``__aexit__`` returns only once its writes are durable.

Rows become typed values with :func:`row_as`/:func:`rows_as` (``rows_as(Note, rows)``: a
list of ``Note`` structs, checked, and typed for ``mypy --strict``).

This module only re-exports; the code lives in :mod:`monolith.database`.
"""

from monolith.database import open_database, sqlite_path
from monolith.database.base import (
    BackupProgress,
    Database,
    Params,
    Queries,
    Row,
    Transaction,
    row_as,
    rows_as,
    write_deadline,
)

__all__ = [
    "BackupProgress",
    "Database",
    "Params",
    "Queries",
    "Row",
    "Transaction",
    "open_database",
    "row_as",
    "rows_as",
    "sqlite_path",
    "write_deadline",
]
