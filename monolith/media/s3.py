"""File storage in a bucket, through the S3 API (``MONOLITH_MEDIA_URL=s3://BUCKET[/PREFIX]?...``).

Every instance that points at the bucket sees every file, so an image uploaded through one is
served by all (``GET /media/{key}`` reads it from the bucket, with the same caching headers as
the local directory). Credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.

The client is obstore (Rust's ``object_store``, the Apache Arrow project's): measured against
the same S3-protocol server with a 100 KB image (bench/s3_clients.py, docs/BENCHMARKS.md),
a PUT took ~4 ms and a GET ~4 ms at the median, against ~24 ms and ~20 ms with aiobotocore,
and it imports in ~30 ms against ~1.5 s: every serve worker pays the import at start.

An object is written whole by one PUT (S3 never shows half an object), so a reader sees the
whole file or none, as with the local directory's rename. Errors other than "not found"
become :class:`~monolith.media.base.MediaUnavailable` (HTTP 503).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from monolith.media.base import (
    CHUNK,
    MediaFile,
    MediaNotFound,
    MediaStorage,
    MediaUnavailable,
    check_key,
)
from monolith.s3url import S3Location


class S3MediaStorage(MediaStorage):
    scope = "shared"

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self._store: S3Store | None = None

    def describe(self) -> str:
        return f"object storage {self.location.describe()}"

    async def start(self) -> None:
        if self._store is not None:
            return
        loc = self.location
        options: dict[str, Any] = {}
        if loc.endpoint is not None:
            options["endpoint"] = loc.endpoint
            options["virtual_hosted_style_request"] = False
        client: dict[str, Any] = {"timeout": "30s", "connect_timeout": "5s"}
        if loc.endpoint is not None and loc.endpoint.startswith("http://"):
            client["allow_http"] = True
        if loc.skip_verify:
            client["allow_invalid_certificates"] = True
        for name, variable in (
            ("access_key_id", "AWS_ACCESS_KEY_ID"),
            ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("token", "AWS_SESSION_TOKEN"),
        ):
            if os.environ.get(variable):
                options[name] = os.environ[variable]
        self._store = S3Store(
            loc.bucket,
            prefix=loc.prefix or None,
            region=loc.region,
            client_options=client,  # type: ignore[arg-type]  # a ClientConfig TypedDict
            **options,
        )

    async def stop(self) -> None:
        self._store = None

    def _require(self) -> S3Store:
        if self._store is None:
            raise MediaUnavailable("the media storage is not started")
        return self._store

    async def put(self, key: str, data: bytes) -> None:
        store, key = self._require(), check_key(key)
        try:
            await obstore.put_async(store, key, bytes(data))
        except Exception as exc:
            raise MediaUnavailable(f"cannot store the file: {_one_line(exc)}") from exc

    async def get(self, key: str) -> bytes:
        store, key = self._require(), check_key(key)
        try:
            found = await obstore.get_async(store, key)
            return bytes(await found.bytes_async())
        except (FileNotFoundError, NotFoundError):
            raise MediaNotFound("no such file") from None
        except Exception as exc:
            raise MediaUnavailable(f"cannot read the file: {_one_line(exc)}") from exc

    async def open(self, key: str) -> MediaFile:
        """Streamed from the bucket in chunks of :data:`CHUNK`: the response starts with the
        object's first bytes, and a worker never holds a whole file."""
        store, key = self._require(), check_key(key)
        try:
            found = await obstore.get_async(store, key)
        except (FileNotFoundError, NotFoundError):
            raise MediaNotFound("no such file") from None
        except Exception as exc:
            raise MediaUnavailable(f"cannot read the file: {_one_line(exc)}") from exc
        size = int(found.meta["size"])

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in found.stream(min_chunk_size=CHUNK):
                    yield bytes(chunk)
            except Exception as exc:  # mid-body: the connection is cut short (Content-Length)
                raise MediaUnavailable(f"cannot read the file: {_one_line(exc)}") from exc

        return MediaFile(size, chunks())

    async def exists(self, key: str) -> bool:
        store, key = self._require(), check_key(key)
        try:
            await obstore.head_async(store, key)
        except (FileNotFoundError, NotFoundError):
            return False
        except Exception as exc:
            raise MediaUnavailable(f"cannot read the file: {_one_line(exc)}") from exc
        return True

    async def delete(self, key: str) -> bool:
        existed = await self.exists(key)
        if existed:
            try:
                await obstore.delete_async(self._require(), key)
            except Exception as exc:
                raise MediaUnavailable(f"cannot delete the file: {_one_line(exc)}") from exc
        return existed

    async def keys(self) -> list[str]:
        """Every key stored (for ``monolith media migrate``'s check)."""
        found: list[str] = []
        try:
            async for batch in obstore.list(self._require()):
                found += [str(item["path"]).rsplit("/", 1)[-1] for item in batch]
        except Exception as exc:
            raise MediaUnavailable(f"cannot list the bucket: {_one_line(exc)}") from exc
        return found

    async def ping(self) -> None:
        """Raise :class:`MediaUnavailable` unless the bucket answers (for ``doctor``)."""
        await self.start()
        try:
            await obstore.head_async(self._require(), "monolith-doctor-probe")
        except (FileNotFoundError, NotFoundError):
            return
        except Exception as exc:
            raise MediaUnavailable(f"{self.describe()}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or exc.__class__.__name__
