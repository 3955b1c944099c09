"""Product images: upload (admin, multipart) and ``GET /media/{key}``.

The upload's bytes decide what it is (PNG, JPEG or WebP, by magic bytes), never its file name
or declared type, and it is stored under a new random key: no client-supplied name or path
reaches the storage. A stored file never changes, so it is served with a year-long,
immutable cache lifetime (behind Caddy, ``/media/*`` can be served from the directory
directly with the same headers).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith import catalog, media
from monolith.catalog import Product
from monolith.services import Services
from monolith.web.body import UnprocessableEntity
from monolith.web.guards import Guard, admin_guard

Req = Request[Any, Any, Any]
ProductId = Annotated[int, Parameter(ge=1, le=2**62)]
MediaKey = Annotated[str, Parameter(max_length=100)]
IMMUTABLE = "public, max-age=31536000, immutable"
#: Room for the multipart envelope around a file of the largest accepted size.
ENVELOPE = 64 * 1024


class PayloadTooLarge(HTTPException):
    status_code = 413


class UnsupportedMediaType(HTTPException):
    status_code = 415


async def read_image(request: Req) -> tuple[bytes, str]:
    """The uploaded file's bytes and key extension, or the 4xx that says what is wrong."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise UnprocessableEntity(detail="file: required (a multipart/form-data field 'file')")
    data = await upload.read()
    try:
        return data, media.check_image(data)
    except media.MediaTooLarge as exc:
        raise PayloadTooLarge(detail=str(exc)) from None
    except media.UnsupportedMedia as exc:
        raise UnsupportedMediaType(detail=str(exc)) from None


def upload_guard(svc: Services) -> Guard:
    """The admin guard, reading the body before it refuses.

    A refusal sent before the upload is read makes the server close a connection with unread
    bytes, which the client sees as a reset instead of the 401. The body is bounded by the
    route's size limit, so reading it costs at most that.
    """
    check = admin_guard(svc)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        try:
            await check(connection, handler)
        except HTTPException:
            if isinstance(connection, Request):
                with contextlib.suppress(Exception):
                    async for _ in connection.stream():
                        pass
            raise

    return guard


def routes(svc: Services) -> list[ControllerRouterHandler]:
    db, storage, hub = svc.db, svc.media, svc.events

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
            raise NotFoundException(detail=f"product {product_id} not found")
        key = await storage.save(data, extension)
        async with db.transaction() as tx:
            old = await tx.fetch_val("SELECT image_key FROM products WHERE id = ?", (product_id,))
            product = await catalog.update_product(tx, product_id, {"image_key": key})
        if product is None:  # deleted meanwhile
            await storage.delete(key)
            raise NotFoundException(detail=f"product {product_id} not found")
        if old:
            # Pages that still name the old key get a 404 for it rather than a stale image.
            with contextlib.suppress(media.MediaError):
                await storage.delete(old)
        await catalog.product_changed(svc, product_id)
        hub.publish_soon("products", catalog.product_event("updated", product))
        return product

    @get("/media/{key:str}", summary="An uploaded file", include_in_schema=False)
    async def get_media(key: MediaKey) -> Response[bytes]:
        try:
            data = await storage.get(key)
        except media.MediaNotFound:
            raise NotFoundException(detail="no such file") from None
        return Response(
            data,
            media_type=media.content_type(key),
            headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
        )

    return [upload_image, get_media]
