"""What follows a committed change to products: the one place that says it.

After a product is created, changed, deleted, given an image, or has its stock taken by an
order, three things follow, in this order:

1. its cached reads are retired (its own ``product`` entry and every ``catalog`` page, since
   any write can move any page): one bump of their generations, in one store call, after
   which no worker and no instance serves the old bytes (nor its own copy of the response);
2. files it no longer names (a replaced or deleted image) are removed;
3. its event is published on the ``products`` channel.

An order's events are the exception to "after": :func:`stock_taken` writes them in the
order's own transaction (``EventHub.publish(..., tx=)``), so they cost no write of their own
and are sent exactly when the order commits; :func:`stock_changed` then retires the cache.

The change is committed before any of this runs, so a failure here (the store or the media
storage down) must never turn the request's answer into an error: it is logged, the
remaining steps still run, and the client gets the committed result. Only a job asks for
failures to be raised (``strict=True``), so that it is retried until the store works again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from monolith.db import Transaction
from monolith.errors import MonolithError
from monolith.logs import get_logger
from monolith.services import Components
from monolith.shop.catalog.cache import CATALOG, PRODUCT
from monolith.shop.catalog.model import Product

log = get_logger("monolith.catalog")

CHANNEL = "products"


def product_event(kind: str, product: Product) -> dict[str, Any]:
    """A ``products`` channel event: ``product.created``/``product.updated`` with the product."""
    return {"type": f"product.{kind}", "id": product.id, "product": product}


def product_deleted_event(product_id: int) -> dict[str, Any]:
    return {"type": "product.deleted", "id": product_id}


async def forget(svc: Components, product_ids: Iterable[int]) -> None:
    """Retire the cached reads of ``product_ids`` and every catalog page (raises on failure)."""
    entries = [(PRODUCT, (product_id,)) for product_id in sorted(set(product_ids))]
    await svc.cache.invalidate_many(entries, [CATALOG])


async def products_changed(
    svc: Components,
    product_ids: Iterable[int],
    events: Sequence[dict[str, Any]] = (),
    *,
    unused_images: Iterable[str | None] = (),
    strict: bool = False,
) -> None:
    """Run what follows a committed change to ``product_ids`` (see the module doc).

    ``events`` are published after the cache is dropped, whatever happened to it;
    ``unused_images`` are media keys the change left unnamed. With ``strict`` the first
    failure is raised once every step has run (for jobs, which retry); otherwise it is logged.
    """
    ids = sorted(set(product_ids))
    failure: MonolithError | None = None
    try:
        await forget(svc, ids)
    except MonolithError as exc:
        log.warning("cache not invalidated after a product change", products=ids, error=str(exc))
        failure = exc
    for key in unused_images:
        if not key:
            continue
        try:
            await svc.media.delete(key)
        except MonolithError as exc:
            # The row no longer names the file: it is an orphan, never served as current.
            log.warning("unused image not removed", key=key, error=str(exc))
    for event in events:
        svc.events.publish_soon(CHANNEL, event)
    if strict and failure is not None:
        raise failure


async def stock_taken(svc: Components, tx: Transaction, products: Sequence[Product]) -> None:
    """Inside an order's transaction: announce the products' new stock (``products`` as the
    stock update returned them). The event rows commit with the order, or not at all."""
    for product in products:
        await svc.events.publish(CHANNEL, product_event("updated", product), tx=tx)


async def stock_changed(svc: Components, product_ids: Sequence[int]) -> None:
    """After an order committed: retire the products' cached reads and every catalog page.

    Never raises: the order is committed and its client must get its 201. The confirmation
    job retires the same reads again (strictly), so a store that was down is caught up later.
    """
    await products_changed(svc, product_ids)
