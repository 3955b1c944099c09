"""Catalog routes: public reads (cacheable), admin writes.

Request bodies are decoded by :func:`monolith.web.body.decode` rather than Litestar's ``data``
parameter: Litestar decodes leniently (``"5"`` becomes ``5``), and a wrong type must be a 422.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith import catalog
from monolith.catalog import Product, ProductIn, ProductPatch
from monolith.media import MediaError
from monolith.services import Services
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.conditional import cacheable_json
from monolith.web.guards import admin_guard

Req = Request[Any, Any, Any]
ProductId = Annotated[int, Parameter(ge=1, le=2**62)]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    db, hub = svc.db, svc.events
    admin = [admin_guard(svc)]
    cache_reads = svc.settings.cache.products  # MONOLITH_CACHE_PRODUCTS=off: the database

    async def read_product(product_id: int) -> bytes | None:
        if cache_reads:
            return await catalog.cached_product_json(svc, product_id)
        return await catalog.product_json(db, product_id)

    async def read_page(limit: int, after: int) -> bytes:
        if cache_reads:
            return await catalog.cached_page_json(svc, limit, after)
        return await catalog.page_json(db, limit, after)

    def missing(product_id: int) -> NotFoundException:
        return NotFoundException(detail=f"product {product_id} not found")

    @get("/api/products", summary="A page of the catalog")
    async def list_products(
        request: Req,
        limit: Annotated[int, Parameter(ge=1, le=catalog.MAX_PAGE)] = catalog.DEFAULT_PAGE,
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[bytes]:
        try:
            after = catalog.decode_cursor(cursor) if cursor else 0
        except catalog.InvalidCursor as exc:
            raise ClientException(detail=str(exc)) from None
        return cacheable_json(request, await read_page(limit, after))

    @get("/api/products/{product_id:int}", summary="One product")
    async def get_product(request: Req, product_id: ProductId) -> Response[bytes]:
        body = await read_product(product_id)
        if body is None:
            raise missing(product_id)
        return cacheable_json(request, body)

    @post("/api/products", guards=admin, summary="Create a product (admin)")
    async def create_product(request: Req) -> Product:
        data = await decode(request, ProductIn)
        async with db.transaction() as tx:
            product = await catalog.create_product(tx, data)
        await catalog.product_changed(svc, product.id)
        hub.publish_soon("products", catalog.product_event("created", product))
        return product

    @patch("/api/products/{product_id:int}", guards=admin, summary="Change a product (admin)")
    async def update_product(request: Req, product_id: ProductId) -> Product:
        changes = (await decode(request, ProductPatch)).changes()
        if not changes:
            raise UnprocessableEntity(detail="body: no field to change")
        async with db.transaction() as tx:
            product = await catalog.update_product(tx, product_id, changes)
        if product is None:
            raise missing(product_id)
        await catalog.product_changed(svc, product_id)
        hub.publish_soon("products", catalog.product_event("updated", product))
        return product

    @delete("/api/products/{product_id:int}", guards=admin, summary="Delete a product (admin)")
    async def delete_product(product_id: ProductId) -> None:
        async with db.transaction() as tx:
            image_key = await tx.fetch_val(
                "SELECT image_key FROM products WHERE id = ?", (product_id,)
            )
            if not await catalog.delete_product(tx, product_id):
                raise missing(product_id)
        await catalog.product_changed(svc, product_id)
        if image_key:
            with contextlib.suppress(MediaError):
                await svc.media.delete(image_key)
        hub.publish_soon("products", catalog.product_deleted_event(product_id))

    return [list_products, get_product, create_product, update_product, delete_product]
