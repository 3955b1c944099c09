"""Public, cacheable JSON responses: ``ETag``, ``Cache-Control`` and 304 on ``If-None-Match``."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request, Response

PUBLIC_MAX_AGE = 60


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def matches_etag(header: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (or is ``*``)."""
    if header.strip() == "*":
        return True
    tags = (t.strip().removeprefix("W/") for t in header.split(","))
    return etag in tags


def cacheable_json(
    request: Request[Any, Any, Any], body: bytes, *, max_age: int = PUBLIC_MAX_AGE
) -> Response[bytes]:
    """200 with the body, or an empty 304 when the client already holds these bytes."""
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    inm = request.headers.get("if-none-match")
    if inm is not None and matches_etag(inm, etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
