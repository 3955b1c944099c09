"""Order routes: place an order, read your own.

``POST /api/orders`` takes the stock, records the order and enqueues its confirmation job in
one transaction (:mod:`.model`, :mod:`.jobs`), with the products' ``product.updated`` events
(:func:`monolith.shop.catalog.effects.stock_taken`), so an acknowledged order always has its
job and its events, and an order that fails leaves stock, orders, jobs and events as they were.
After the commit it retires the products' cached reads
(:func:`monolith.shop.catalog.effects.stock_changed`).

Bad input changes nothing: malformed JSON is a 400; empty ``items``, more than 50 lines, a
quantity outside 1..1000 or an unknown field is a 422 naming the field; a product that does not
exist is a 422 naming it (the route exists, the body is what is wrong); a product short of
stock is a 409 naming it. A product named on several lines is one line with the quantities
added up.

An ``Idempotency-Key`` header makes a retried order safe (:mod:`monolith.web.idempotency`):
the same key and body give the same order back, and stock is taken once.

Reads show only the caller's orders: another user's order is a 404, exactly like a missing
one, so order ids cannot be probed. This module never returns after a commit with an error:
once an order is committed the client must learn its id.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith.db import Transaction
from monolith.services import Services
from monolith.shop.catalog.effects import stock_changed, stock_taken
from monolith.shop.catalog.model import Product
from monolith.shop.orders import model as orders
from monolith.shop.orders.model import Order, OrderIn, OrderPage
from monolith.web.body import decode
from monolith.web.guards import require_user
from monolith.web.idempotency import write_once

Req = Request[Any, Any, Any]
OrderId = Annotated[int, Parameter(ge=1, le=2**62)]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    @post("/api/orders", status_code=201, summary="Place an order (signed in)")
    async def place_order(request: Req) -> Order | Response[bytes]:
        user = await require_user(svc, request)
        data = await decode(request, OrderIn)

        async def write(tx: Transaction) -> Order:
            # UnknownProduct is a 422 and InsufficientStock a 409 (monolith.web.errors.STATUS).
            changed: list[Product] = []
            order = await orders.place_order(tx, user.id, data, products=changed)
            await svc.jobs.enqueue(
                orders.CONFIRM_JOB,
                orders.confirm_payload(order),
                unique_key=f"{orders.CONFIRM_JOB}:{order.id}",
                tx=tx,
            )
            await stock_taken(svc, tx, changed)
            return order

        # With an Idempotency-Key, a retry gets the first order back and takes no stock.
        order = await write_once(svc, request, write, status=201)
        if isinstance(order, Response):
            return order
        await stock_changed(svc, [line.product_id for line in order.items])
        return order

    @get("/api/orders", summary="Your orders, newest first (signed in)")
    async def list_orders(
        request: Req,
        limit: Annotated[int, Parameter(ge=1, le=orders.MAX_PAGE)] = 20,
        before: Annotated[int | None, Parameter(ge=1, le=2**62)] = None,
    ) -> OrderPage:
        user = await require_user(svc, request)
        return await orders.order_page(svc.db, user.id, limit=limit, before=before or 0)

    @get("/api/orders/{order_id:int}", summary="One of your orders (signed in)")
    async def get_order(request: Req, order_id: OrderId) -> Order:
        user = await require_user(svc, request)
        order = await orders.get_order(svc.db, user.id, order_id)
        if order is None:
            raise NotFoundException(detail=f"order {order_id} not found")
        return order

    return [place_order, list_orders, get_order]
