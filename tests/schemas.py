"""A database's schema, reflected through SQLAlchemy and normalized so SQLite's and
PostgreSQL's can be compared: column kinds instead of type names, defaults and conditions
without casts, quotes or parentheses."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from monolith.db import sqlite_path

Schema = dict[str, dict[str, Any]]


def kind(column_type: Any) -> str:
    for family, name in (
        (sa.Boolean, "integer"),  # SQLite has no boolean: 0 and 1 in an INTEGER
        (sa.Integer, "integer"),
        (sa.Float, "float"),
        (sa.Numeric, "float"),
        (sa.String, "text"),
        (sa.LargeBinary, "bytes"),
    ):
        if isinstance(column_type, family):
            return name
    return repr(column_type)


def clean(text: Any) -> str | None:
    if text is None:
        return None
    value = re.sub(r"::[a-z ]+", "", str(text).lower())
    value = re.sub(r"[()'\"\s]", "", value)
    value = {"false": "0", "true": "1"}.get(value, value)
    # PostgreSQL shows ``x IN ('a', 'b')`` as ``x = ANY (ARRAY['a', 'b'])``.
    return re.sub(r"^(\w+)=anyarray\[(.*)\]$", r"\1in\2", value)


def on_delete(conn: sa.Connection, table: str, fk: Any) -> str:
    """A foreign key's ON DELETE action (SQLite's reflection misses it on a column's
    inline REFERENCES, so SQLite's own list is asked)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")').all()
        for row in rows:
            if row[3] == fk["constrained_columns"][0]:
                action = str(row[6]).lower()
                return "" if action == "no action" else action
    return str(fk.get("options", {}).get("ondelete", "") or "").lower()


def reflect(conn: sa.Connection) -> Schema:
    insp = sa.inspect(conn)
    schema: Schema = {}
    for table in sorted(insp.get_table_names()):
        if table == "schema_migrations":  # the runner's bookkeeping, compared by its rows
            continue
        indexes = [
            i
            for i in insp.get_indexes(table)
            if not i.get("duplicates_constraint") and not str(i["name"]).startswith("sqlite_")
        ]
        key = insp.get_pk_constraint(table)["constrained_columns"]
        schema[table] = {
            "columns": [
                # SQLite reports a key column without NOT NULL as nullable; it never is here.
                (
                    c["name"],
                    kind(c["type"]),
                    c["nullable"] and c["name"] not in key,
                    clean(c["default"]),
                )
                for c in insp.get_columns(table)
            ],
            "primary_key": key,
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "indexes": sorted(
                (
                    i["name"],
                    tuple(str(c) for c in i["column_names"]),
                    bool(i["unique"]),
                    clean(
                        next(
                            (v for k, v in i.get("dialect_options", {}).items() if "where" in k),
                            None,
                        )
                    ),
                )
                for i in indexes
            ),
            "foreign_keys": sorted(
                (
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    on_delete(conn, table, f),
                )
                for f in insp.get_foreign_keys(table)
            ),
            "checks": sorted(clean(c["sqltext"]) or "" for c in insp.get_check_constraints(table)),
        }
    return schema


async def schema_of(url: str) -> Schema:
    """The normalized schema of the database at a ``sqlite:///`` or ``postgresql://`` URL."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(f"sqlite:///{sqlite_path(url)}", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return reflect(conn)
        finally:
            engine.dispose()
    async_engine = create_async_engine(
        "postgresql+asyncpg://" + url.split("://", 1)[1], poolclass=NullPool
    )
    try:
        async with async_engine.connect() as aconn:
            return await aconn.run_sync(reflect)
    finally:
        await async_engine.dispose()
