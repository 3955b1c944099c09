"""Orders: placing one (taking stock atomically), confirming it, and reading a user's own.

Stock is taken with one conditional ``UPDATE … SET stock = stock - q WHERE stock >= q`` per
product, inside the caller's transaction: the database decides, so two workers (or two boxes
on PostgreSQL) can never sell the same unit twice, and there is no read-then-write window to
lock. Products are taken in id order so that two orders for the same products cannot deadlock
on PostgreSQL. When one line cannot be served the caller's transaction rolls back, returning
whatever the earlier lines took. The caller enqueues the confirmation job in that same
transaction, so an order is never left without one.

Confirming is idempotent: ``pending -> confirmed`` happens once, whatever number of times the
job runs. This module never publishes events or touches a cache; the routes and the job do
that after the commit.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec

from monolith.db import Queries, Row, Transaction
from monolith.errors import Conflict, InvalidField, MonolithError
from monolith.shop.catalog.model import PRODUCT_COLUMNS, Product, to_product

Status = Literal["pending", "confirmed", "cancelled"]
MAX_PAGE = 100
#: The job that confirms a placed order (:mod:`monolith.shop.orders.jobs`).
CONFIRM_JOB = "orders.confirm"


class OrderLineIn(msgspec.Struct, forbid_unknown_fields=True):
    product_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1000)]


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[OrderLineIn], msgspec.Meta(min_length=1, max_length=50)]


class OrderLine(msgspec.Struct):
    product_id: int
    product_name: str
    quantity: int
    unit_price_cents: int


class Order(msgspec.Struct):
    id: int
    status: Status
    total_cents: int
    items: list[OrderLine]
    created_at: float
    updated_at: float
    confirmed_at: float | None


class ConfirmPayload(msgspec.Struct, forbid_unknown_fields=True):
    """The confirmation job's payload: the order, and the products whose stock it took."""

    order_id: int
    product_ids: list[int]


def confirm_payload(order: Order) -> dict[str, object]:
    return {"order_id": order.id, "product_ids": [line.product_id for line in order.items]}


class OrderError(MonolithError):
    """An order that cannot be placed as asked; the message names the product."""


class UnknownProduct(OrderError, InvalidField):
    """A line names a product that does not exist (HTTP 422)."""

    def __init__(self, product_id: int) -> None:
        super().__init__(f"items: product {product_id} does not exist")
        self.product_id = product_id


class InsufficientStock(OrderError, Conflict):
    """A line asks for more than is in stock (HTTP 409)."""

    def __init__(self, product_id: int, wanted: int, available: int) -> None:
        super().__init__(f"product {product_id}: {wanted} wanted, {available} in stock")
        self.product_id = product_id
        self.available = available


_ORDER_COLUMNS = "id, user_id, status, total_cents, created_at, updated_at, confirmed_at"


def _merge(lines: list[OrderLineIn]) -> list[tuple[int, int]]:
    """(product_id, quantity) with repeated products added up, in product id order."""
    wanted: dict[int, int] = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    return sorted(wanted.items())


async def place_order(
    tx: Transaction, user_id: int, data: OrderIn, *, products: list[Product] | None = None
) -> Order:
    """Take the stock and record a pending order; raises :class:`OrderError` subclasses.

    ``products``, when given, receives each product's new state as the stock update returned it
    (``RETURNING``): what the after-change events need, without reading the rows again.
    """
    now = time.time()
    lines: list[OrderLine] = []
    for product_id, quantity in _merge(data.items):
        row = await tx.fetch_one(
            "UPDATE products SET stock = stock - ?, updated_at = ? "
            f"WHERE id = ? AND stock >= ? RETURNING {PRODUCT_COLUMNS}",
            (quantity, now, product_id, quantity),
        )
        if row is None:
            available = await tx.fetch_val("SELECT stock FROM products WHERE id = ?", (product_id,))
            if available is None:
                raise UnknownProduct(product_id)
            raise InsufficientStock(product_id, quantity, int(available))
        lines.append(OrderLine(product_id, row["name"], quantity, int(row["price_cents"])))
        if products is not None:
            products.append(to_product(row))
    total = sum(line.quantity * line.unit_price_cents for line in lines)
    order_id = int(
        await tx.fetch_val(
            "INSERT INTO orders (user_id, status, total_cents, created_at, updated_at) "
            "VALUES (?, 'pending', ?, ?, ?) RETURNING id",
            (user_id, total, now, now),
        )
    )
    await tx.execute_many(
        "INSERT INTO order_items (order_id, product_id, product_name, quantity, unit_price_cents) "
        "VALUES (?, ?, ?, ?, ?)",
        [(order_id, x.product_id, x.product_name, x.quantity, x.unit_price_cents) for x in lines],
    )
    return Order(order_id, "pending", total, lines, now, now, None)


async def confirm_order(tx: Transaction, order_id: int) -> Order | None:
    """Move a pending order to confirmed; None when it was not pending (e.g. already confirmed)."""
    now = time.time()
    row = await tx.fetch_one(
        "UPDATE orders SET status = 'confirmed', confirmed_at = ?, updated_at = ? "
        f"WHERE id = ? AND status = 'pending' RETURNING {_ORDER_COLUMNS}",
        (now, now, order_id),
    )
    if row is None:
        return None
    return (await _with_lines(tx, [row]))[0]


async def _with_lines(q: Queries, rows: list[Row]) -> list[Order]:
    if not rows:
        return []
    ids = [int(r["id"]) for r in rows]
    marks = ", ".join("?" for _ in ids)
    item_rows = await q.fetch_all(
        "SELECT order_id, product_id, product_name, quantity, unit_price_cents "
        f"FROM order_items WHERE order_id IN ({marks}) ORDER BY order_id, product_id",
        ids,
    )
    lines: dict[int, list[OrderLine]] = {order_id: [] for order_id in ids}
    for r in item_rows:
        lines[int(r[0])].append(OrderLine(int(r[1]), r[2], int(r[3]), int(r[4])))
    return [
        Order(
            id=int(r["id"]),
            status=r["status"],
            total_cents=int(r["total_cents"]),
            items=lines[int(r["id"])],
            created_at=float(r["created_at"]),
            updated_at=float(r["updated_at"]),
            confirmed_at=None if r["confirmed_at"] is None else float(r["confirmed_at"]),
        )
        for r in rows
    ]


async def get_order(q: Queries, user_id: int, order_id: int) -> Order | None:
    """One of ``user_id``'s orders; None for a missing order and for another user's alike."""
    row = await q.fetch_one(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ? AND user_id = ?", (order_id, user_id)
    )
    return None if row is None else (await _with_lines(q, [row]))[0]


class OrderPage(msgspec.Struct):
    items: list[Order]
    #: Pass as ``before`` for the next (older) page; None on the last page.
    next_before: int | None


async def order_page(q: Queries, user_id: int, *, limit: int = 20, before: int = 0) -> OrderPage:
    """``user_id``'s orders, newest first, at most ``limit`` (capped at ``MAX_PAGE``);
    ``before`` (an order id) pages back."""
    limit = max(1, min(limit, MAX_PAGE))
    # Two statements rather than one with "(? = 0 OR id < ?)": the OR keeps the planner on the
    # user_id part of the (user_id, id) index, so a deep page would cost in proportion to its
    # depth; "id < ?" is a range on the index and costs the same at any depth.
    if before:
        rows = await q.fetch_all(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?",
            (user_id, before, limit + 1),  # one more, to know whether there is a next page
        )
    else:
        rows = await q.fetch_all(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit + 1),
        )
    items = await _with_lines(q, rows[:limit])
    return OrderPage(items, items[-1].id if len(rows) > limit else None)


async def list_orders(q: Queries, user_id: int, *, limit: int = 20, before: int = 0) -> list[Order]:
    """``user_id``'s orders, newest first; ``before`` (an order id) pages back."""
    return (await order_page(q, user_id, limit=limit, before=before)).items


async def order_owner(q: Queries, order_id: int) -> int | None:
    """The id of the user who placed the order (who may hear its events)."""
    owner = await q.fetch_val("SELECT user_id FROM orders WHERE id = ?", (order_id,))
    return None if owner is None else int(owner)


def order_event(order: Order) -> dict[str, object]:
    """What subscribers of the public ``orders`` channel learn: no user, no lines."""
    return {"type": f"order.{order.status}", "id": order.id, "at": order.updated_at}
