"""Orders on the database, on SQLite and PostgreSQL: stock taken atomically, confirmed once."""

from __future__ import annotations

import asyncio
import time

import pytest

from monolith.db import Database, open_database
from monolith.errors import DatabaseBusy
from monolith.shop.orders.model import (
    InsufficientStock,
    OrderIn,
    OrderLineIn,
    UnknownProduct,
    confirm_order,
    get_order,
    list_orders,
    order_event,
    place_order,
)

pytestmark = pytest.mark.profile_independent


async def add_product(db: Database, name: str, price: int, stock: int) -> int:
    now = time.time()
    async with db.transaction() as tx:
        return int(
            await tx.fetch_val(
                "INSERT INTO products (name, price_cents, stock, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, price, stock, now, now),
            )
        )


async def stock_of(db: Database, product_id: int) -> int:
    return int(await db.fetch_val("SELECT stock FROM products WHERE id = ?", (product_id,)))


def order(*lines: tuple[int, int]) -> OrderIn:
    return OrderIn(items=[OrderLineIn(product_id=p, quantity=q) for p, q in lines])


async def test_placing_an_order_takes_stock_and_records_the_lines(db: Database) -> None:
    mug = await add_product(db, "Mug", 1250, 10)
    pot = await add_product(db, "Teapot", 4000, 3)
    async with db.transaction() as tx:
        placed = await place_order(tx, 7, order((mug, 2), (pot, 1), (mug, 1)))
    assert placed.status == "pending"
    assert placed.total_cents == 3 * 1250 + 4000
    assert [(x.product_name, x.quantity) for x in placed.items] == [("Mug", 3), ("Teapot", 1)]
    assert (await stock_of(db, mug), await stock_of(db, pot)) == (7, 2)
    assert await get_order(db, 7, placed.id) == placed


async def test_an_order_short_of_stock_changes_nothing(db: Database) -> None:
    mug = await add_product(db, "Mug", 1250, 10)
    pot = await add_product(db, "Teapot", 4000, 1)
    with pytest.raises(InsufficientStock, match=f"product {pot}: 2 wanted, 1 in stock"):
        async with db.transaction() as tx:
            await place_order(tx, 7, order((mug, 5), (pot, 2)))
    assert (await stock_of(db, mug), await stock_of(db, pot)) == (10, 1)
    assert await db.fetch_val("SELECT COUNT(*) FROM orders") == 0


async def test_an_order_for_a_missing_product_changes_nothing(db: Database) -> None:
    mug = await add_product(db, "Mug", 1250, 10)
    with pytest.raises(UnknownProduct, match="product 999 does not exist"):
        async with db.transaction() as tx:
            await place_order(tx, 7, order((mug, 1), (999, 1)))
    assert await stock_of(db, mug) == 10
    assert await db.fetch_val("SELECT COUNT(*) FROM order_items") == 0


async def test_an_order_is_confirmed_once(db: Database) -> None:
    mug = await add_product(db, "Mug", 1250, 10)
    async with db.transaction() as tx:
        placed = await place_order(tx, 7, order((mug, 1)))
    async with db.transaction() as tx:
        confirmed = await confirm_order(tx, placed.id)
    assert confirmed is not None
    assert confirmed.status == "confirmed"
    assert confirmed.confirmed_at is not None
    assert order_event(confirmed) == {
        "type": "order.confirmed",
        "id": placed.id,
        "at": confirmed.updated_at,
    }
    async with db.transaction() as tx:  # the job running a second time
        assert await confirm_order(tx, placed.id) is None
    assert await get_order(db, 7, placed.id) == confirmed


async def test_a_user_sees_only_their_own_orders(db: Database) -> None:
    mug = await add_product(db, "Mug", 100, 100)
    ids = {}
    for user in (1, 2, 1, 1):
        async with db.transaction() as tx:
            ids.setdefault(user, []).append((await place_order(tx, user, order((mug, 1)))).id)
    assert [o.id for o in await list_orders(db, 1)] == ids[1][::-1]
    assert [o.id for o in await list_orders(db, 1, limit=2)] == ids[1][:0:-1]
    assert [o.id for o in await list_orders(db, 1, before=ids[1][1])] == ids[1][:1]
    assert await get_order(db, 2, ids[1][0]) is None
    assert [o.id for o in await list_orders(db, 3)] == []


async def test_two_workers_never_sell_more_than_the_stock(db: Database, db_url: str) -> None:
    """Two Database objects on one database stand for two worker processes."""
    mug = await add_product(db, "Mug", 100, 50)
    other = open_database(db_url)
    await other.start()

    async def buy(worker: Database, user: int) -> bool:
        while True:
            try:
                async with worker.transaction() as tx:
                    await place_order(tx, user, order((mug, 1)))
                return True
            except InsufficientStock:
                return False
            except DatabaseBusy:  # the 503 a client would retry after
                await asyncio.sleep(0.01)

    try:
        results = await asyncio.gather(*(buy(db if i % 2 else other, i % 20) for i in range(200)))
    finally:
        await other.stop()
    assert results.count(True) == 50
    assert await stock_of(db, mug) == 0
    assert await db.fetch_val("SELECT COUNT(*) FROM orders") == 50
    assert await db.fetch_val("SELECT SUM(quantity) FROM order_items") == 50
