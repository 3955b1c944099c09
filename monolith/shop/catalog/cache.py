"""The catalog's cached reads; each key is declared here, with its strategy.

Both are dropped by :func:`monolith.shop.catalog.effects.forget` after every committed
product change (a product's own key, and every catalog page).
"""

from __future__ import annotations

from monolith.cache import cached
from monolith.services import Components
from monolith.shop.catalog.model import page_json, product_json

PRODUCT = "product"
CATALOG = "catalog"


@cached(PRODUCT, ttl=300, strategy="invalidate-on-write")
async def cached_product_json(svc: Components, product_id: int) -> bytes | None:
    """``GET /api/products/{id}``'s body (None: no such product, cached too, so probing
    missing ids does not reach the database)."""
    return await product_json(svc.db, product_id)


@cached(CATALOG, ttl=60, strategy="invalidate-on-write")
async def cached_page_json(svc: Components, limit: int, after: int) -> bytes:
    """A catalog page's body. Every product write can move any page, so a write forgets them
    all; the TTL only bounds how long an unread page is kept."""
    return await page_json(svc.db, limit, after)
