"""Order routes: place an order, read your own.

``POST /api/orders`` takes the stock, records the order and enqueues its confirmation job in
one transaction (:mod:`monolith.orders`, :mod:`monolith.tasks`), so an acknowledged order
always has its job, and an order that fails leaves stock, orders and jobs as they were. After
the commit it forgets the cached products whose stock changed and publishes
``product.updated`` for them, as every catalog write does.

Bad input changes nothing: malformed JSON is a 400; empty ``items``, more than 50 lines, a
quantity outside 1..1000 or an unknown field is a 422 naming the field; a product that does not
exist is a 422 naming it (the route exists, the body is what is wrong); a product short of
stock is a 409 naming it. A product named on several lines is one line with the quantities
added up.

Reads show only the caller's orders: another user's order is a 404, exactly like a missing
one, so order ids cannot be probed. This module never returns after a commit with an error:
once an order is committed the client must learn its id.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith import catalog, orders
from monolith.errors import MonolithError
from monolith.logs import get_logger
from monolith.orders import Order, OrderIn, OrderPage
from monolith.services import Services
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.guards import require_user

Req = Request[Any, Any, Any]
OrderId = Annotated[int, Parameter(ge=1, le=2**62)]

log = get_logger("monolith.orders")


async def stock_changed(svc: Services, product_ids: list[int]) -> None:
    """After an order commits: no worker serves the old stock, listeners hear the new one.

    Failures are logged, not raised: the order is committed and the client must get its 201.
    The confirmation job invalidates the same products again, retrying until the store works.
    """
    try:
        await catalog.products_changed(svc, product_ids)
    except MonolithError as exc:
        log.warning("cache not invalidated after an order", products=product_ids, error=str(exc))
    try:
        products = await catalog.get_products(svc.db, product_ids)
    except MonolithError as exc:
        log.warning("product events not published", products=product_ids, error=str(exc))
        return
    for product in products:
        svc.events.publish_soon("products", catalog.product_event("updated", product))


def routes(svc: Services) -> list[ControllerRouterHandler]:
    @post("/api/orders", status_code=201, summary="Place an order (signed in)")
    async def place_order(request: Req) -> Order:
        user = await require_user(svc, request)
        data = await decode(request, OrderIn)
        try:
            async with svc.db.transaction() as tx:
                order = await orders.place_order(tx, user.id, data)
                await svc.jobs.enqueue(
                    orders.CONFIRM_JOB,
                    orders.confirm_payload(order),
                    unique_key=f"{orders.CONFIRM_JOB}:{order.id}",
                    tx=tx,
                )
        except orders.UnknownProduct as exc:
            raise UnprocessableEntity(detail=str(exc)) from None
        except orders.InsufficientStock as exc:
            raise ClientException(status_code=409, detail=str(exc)) from None
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
