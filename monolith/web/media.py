"""Uploaded files over HTTP: reading an upload (for the routes that take one) and
``GET /media/{key}``.

The upload's bytes decide what it is (PNG, JPEG or WebP, by magic bytes), never its file name
or declared type, and it is stored under a new random key: no client-supplied name or path
reaches the storage. A stored file never changes, so it is served with a year-long,
immutable cache lifetime (behind Caddy, ``/media/*`` can be served from the directory
directly with the same headers).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.response import Stream
from litestar.types import ControllerRouterHandler

from monolith import media
from monolith.services import Services
from monolith.web.body import UnprocessableEntity
from monolith.web.guards import Guard, admin_guard

Req = Request[Any, Any, Any]
MediaKey = Annotated[str, Parameter(max_length=100)]
IMMUTABLE = "public, max-age=31536000, immutable"
#: Room for the multipart envelope around a file of the largest accepted size.
ENVELOPE = 64 * 1024


async def read_image(request: Req) -> tuple[bytes, str]:
    """The uploaded file's bytes and key extension, or the 4xx that says what is wrong."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise UnprocessableEntity(detail="file: required (a multipart/form-data field 'file')")
    data = await upload.read()
    return data, media.check_image(data)  # MediaTooLarge: 413; UnsupportedMedia: 415


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
    storage = svc.media

    @get("/media/{key:str}", summary="An uploaded file", include_in_schema=False)
    async def get_media(key: MediaKey) -> Stream:
        # Streamed in chunks from the directory or the bucket: a worker never holds a whole
        # file, and the first bytes leave before the last are read.
        try:
            found = await storage.open(key)
        except media.MediaNotFound:
            raise NotFoundException(detail="no such file") from None
        return Stream(
            found.chunks,
            media_type=media.content_type(key),
            headers={
                "Cache-Control": IMMUTABLE,
                "X-Content-Type-Options": "nosniff",
                "Content-Length": str(found.size),
            },
        )

    return [get_media]
