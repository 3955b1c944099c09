"""The orders' job: ``orders.confirm``.

Enqueued with each order, in the transaction that places it. It moves the order to
``confirmed`` (once, however often it runs), publishes ``order.confirmed`` on the ``orders``
channel, to the order's owner and admins, in the transaction of that change, and retires the
cached reads of the order's products again, strictly: an invalidation the request could not
do (the store down) is done once the store is back, since the job retries until it is (a
retirement is one generation bump, so doing it twice costs one write). Safe to run twice
(delivery is at least once).
"""

from __future__ import annotations

import msgspec

from monolith.jobs import JobContext, job
from monolith.services import Components
from monolith.shop.catalog.effects import products_changed
from monolith.shop.orders.model import (
    CONFIRM_JOB,
    ConfirmPayload,
    confirm_order,
    order_event,
    order_owner,
)


@job(CONFIRM_JOB, max_attempts=10, timeout=30, backoff=1.0)
async def confirm(ctx: JobContext[Components]) -> None:
    payload = msgspec.convert(ctx.payload, ConfirmPayload)
    svc = ctx.services
    async with svc.db.transaction() as tx:
        order = await confirm_order(tx, payload.order_id)
        if order is not None:  # only the run that confirmed it announces it, to its owner
            owner = await order_owner(tx, order.id)
            await svc.events.publish("orders", order_event(order), tx, audience=owner)
    await products_changed(svc, payload.product_ids, strict=True)
