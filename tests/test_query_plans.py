"""Keyset pagination whose cost does not grow with depth: the planner's own word for it.

The statements are the ones the app runs (recorded through the database's statement observer
while the real functions page), explained by each backend: SQLite's ``EXPLAIN QUERY PLAN`` must
search an index with every condition of the page (a range that starts where the page starts),
never scan; PostgreSQL's ``EXPLAIN`` (with sequential scans priced out, as on a large table)
must put every condition in the index condition. A plan that filters rows after reading the
index from its start, as ``(? = 0 OR id < ?)`` made SQLite do, fails here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from monolith.db import Database
from monolith.shop.catalog.model import page_json
from monolith.shop.orders.model import order_page

pytestmark = pytest.mark.profile_independent  # both backends, parametrized


async def statements(db: Database, run: Callable[[], Awaitable[Any]]) -> list[tuple[str, int]]:
    """The SQL ``run`` sends, with how many placeholders each has."""
    seen: list[str] = []
    before = db.observer
    db.observer = lambda sql, seconds, rows: seen.append(sql)
    try:
        await run()
    finally:
        db.observer = before
    return [(sql, sql.count("?")) for sql in seen]


async def plan(db: Database, sql: str, params: tuple[Any, ...]) -> str:
    async with db.transaction() as tx:
        if db.dialect == "sqlite":
            rows = await tx.fetch_all("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(str(row[3]) for row in rows)
        await tx.execute("SET LOCAL enable_seqscan = off")
        rows = await tx.fetch_all("EXPLAIN " + sql, params)
        return "\n".join(str(row[0]) for row in rows)


async def fill(db: Database) -> None:
    now = time.time()
    async with db.transaction() as tx:
        await tx.execute_many(
            "INSERT INTO products (name, description, price_cents, stock, created_at, "
            "updated_at) VALUES (?, '', 100, 10, ?, ?)",
            [(f"p{i}", now, now) for i in range(50)],
        )
        await tx.execute_many(
            "INSERT INTO orders (user_id, status, total_cents, created_at, updated_at) "
            "VALUES (?, 'pending', 100, ?, ?)",
            [(1 + i % 3, now, now) for i in range(60)],
        )


async def test_a_deep_orders_page_is_a_range_on_the_user_index(db: Database) -> None:
    await fill(db)
    for before in (0, 40):
        page = await order_page(db, 1, limit=5, before=before)
        assert page.items and all(before == 0 or o.id < before for o in page.items)
        run = lambda b=before: order_page(db, 1, limit=5, before=b)  # noqa: E731
        sql, marks = (await statements(db, run))[0]
        params = (1, before, 6) if marks == 3 else (1, 6)
        text = await plan(db, sql, params)
        if db.dialect == "sqlite":
            assert "SCAN" not in text, text
            wanted = "(user_id=? AND id<?)" if before else "(user_id=?)"
            assert "orders_user" in text and wanted in text, text
        else:
            assert "Seq Scan" not in text, text
            cond = next(line for line in text.splitlines() if "Index Cond" in line)
            assert "user_id" in cond and ("id < " in cond or not before), text
            assert "Filter" not in text, text


async def test_a_deep_catalog_page_is_a_range_on_the_primary_key(db: Database) -> None:
    await fill(db)
    sql, _ = (await statements(db, lambda: page_json(db, 5, 40)))[0]
    text = await plan(db, sql, (40, 6))
    if db.dialect == "sqlite":
        assert "SEARCH products USING INTEGER PRIMARY KEY (rowid>?)" in text, text
    else:
        assert "Seq Scan" not in text, text
        assert "Index Cond: (id > " in text, text
