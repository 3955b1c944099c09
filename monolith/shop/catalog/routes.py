"""Catalog routes: public reads (cacheable), admin writes, product images.

Request bodies are decoded by :func:`monolith.web.body.decode` rather than Litestar's ``data``
parameter: Litestar decodes leniently (``"5"`` becomes ``5``), and a wrong type must be a 422.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith import media
from monolith.db import Transaction
from monolith.services import Services
from monolith.shop.catalog import model as catalog
from monolith.shop.catalog.cache import cached_page_json, cached_product_json
from monolith.shop.catalog.effects import product_deleted_event, product_event, products_changed
from monolith.shop.catalog.model import Product, ProductIn, ProductPatch
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.conditional import cacheable_json
from monolith.web.fastpath import MEMO, DirectRead
from monolith.web.guards import admin_guard
from monolith.web.idempotency import write_once
from monolith.web.media import ENVELOPE, read_image, upload_guard

Req = Request[Any, Any, Any]
ProductId = Annotated[int, Parameter(ge=1, le=2**62)]


def _product_reader(svc: Services) -> Callable[[int], Awaitable[bytes | None]]:
    db = svc.db
    if svc.settings.store.cache_products:  # MONOLITH_CACHE_PRODUCTS=off: the database

        async def cached(product_id: int) -> bytes | None:
            return await cached_product_json(svc, product_id)

        return cached

    async def uncached(product_id: int) -> bytes | None:
        return await catalog.product_json(db, product_id)

    return uncached


def _product_id(segment: str) -> int | None:
    """A path segment :data:`ProductId` accepts in its plain spelling; None: let Litestar judge."""
    if not segment.isascii() or not segment.isdigit() or segment[0] == "0" or len(segment) > 19:
        return None
    value = int(segment)
    return value if value <= 2**62 else None


def direct_reads(svc: Services) -> list[DirectRead]:
    """``GET /api/products/{id}`` without Litestar's pipeline (monolith.web.fastpath): the
    same read and the same answer as :func:`routes`' ``get_product``."""
    return [
        DirectRead(
            "/api/products/{product_id}", "/api/products/", _product_id, _product_reader(svc)
        )
    ]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    db = svc.db
    admin = [admin_guard(svc)]
    cache_reads = svc.settings.store.cache_products  # MONOLITH_CACHE_PRODUCTS=off: the database
    read_product = _product_reader(svc)

    async def read_page(limit: int, after: int) -> bytes:
        if cache_reads:
            return await cached_page_json(svc, limit, after)
        return await catalog.page_json(db, limit, after)

    def missing(product_id: int) -> NotFoundException:
        return NotFoundException(detail=f"product {product_id} not found")

    @get("/api/products", summary="A page of the catalog", opt=MEMO)
    async def list_products(
        request: Req,
        limit: Annotated[int, Parameter(ge=1, le=catalog.MAX_PAGE)] = catalog.DEFAULT_PAGE,
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[bytes]:
        after = catalog.decode_cursor(cursor) if cursor else 0
        return cacheable_json(request, await read_page(limit, after))

    @get("/api/products/{product_id:int}", summary="One product", opt=MEMO)
    async def get_product(request: Req, product_id: ProductId) -> Response[bytes]:
        body = await read_product(product_id)
        if body is None:
            raise missing(product_id)
        return cacheable_json(request, body)

    # Admin writes take an Idempotency-Key (monolith.web.idempotency): a retry with the same
    # key and body replays the first answer and writes nothing.

    @post("/api/products", guards=admin, summary="Create a product (admin)")
    async def create_product(request: Req) -> Product | Response[bytes]:
        data = await decode(request, ProductIn)

        async def write(tx: Transaction) -> Product:
            return await catalog.create_product(tx, data)

        product = await write_once(svc, request, write, status=201)
        if isinstance(product, Response):
            return product
        await products_changed(svc, [product.id], [product_event("created", product)])
        return product

    @patch("/api/products/{product_id:int}", guards=admin, summary="Change a product (admin)")
    async def update_product(request: Req, product_id: ProductId) -> Product | Response[bytes]:
        changes = (await decode(request, ProductPatch)).changes()
        if not changes:
            raise UnprocessableEntity(detail="body: no field to change")

        async def write(tx: Transaction) -> Product:
            product = await catalog.update_product(tx, product_id, changes)
            if product is None:
                raise missing(product_id)
            return product

        product = await write_once(svc, request, write, status=200)
        if isinstance(product, Response):
            return product
        await products_changed(svc, [product_id], [product_event("updated", product)])
        return product

    @delete("/api/products/{product_id:int}", guards=admin, summary="Delete a product (admin)")
    async def delete_product(request: Req, product_id: ProductId) -> None:
        image_key: str | None = None

        async def write(tx: Transaction) -> None:
            nonlocal image_key
            image_key = await tx.fetch_val(
                "SELECT image_key FROM products WHERE id = ?", (product_id,)
            )
            if not await catalog.delete_product(tx, product_id):
                raise missing(product_id)

        # A replay is the same empty 204 (what followed the first delete already ran).
        if isinstance(await write_once(svc, request, write, status=204), Response):
            return
        await products_changed(
            svc, [product_id], [product_deleted_event(product_id)], unused_images=[image_key]
        )

    @post(
        "/api/products/{product_id:int}/image",
        guards=[upload_guard(svc)],
        request_max_body_size=media.MAX_IMAGE_BYTES + ENVELOPE,
        status_code=200,
        summary="Set a product's image (admin; multipart field 'file'; PNG, JPEG or WebP, 5 MB)",
    )
    async def upload_image(request: Req, product_id: ProductId) -> Product:
        data, extension = await read_image(request)
        if await catalog.get_product(db, product_id) is None:
            raise missing(product_id)
        key = await svc.media.save(data, extension)
        async with db.transaction() as tx:
            old = await tx.fetch_val("SELECT image_key FROM products WHERE id = ?", (product_id,))
            product = await catalog.update_product(tx, product_id, {"image_key": key})
        if product is None:  # deleted meanwhile
            await svc.media.delete(key)
            raise missing(product_id)
        # Pages that still name the old key get a 404 for it rather than a stale image.
        await products_changed(
            svc, [product_id], [product_event("updated", product)], unused_images=[old]
        )
        return product

    return [
        list_products,
        get_product,
        create_product,
        update_product,
        delete_product,
        upload_image,
    ]
