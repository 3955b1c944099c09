"""The file storage interface: bytes stored under keys that the storage itself makes up.

A key is random (:func:`new_key`) plus an extension naming the content type, and nothing a
client sends ever becomes part of a key or a path: :func:`check_key` refuses anything that is
not exactly that shape (``../../etc/passwd``, ``a/b.png``, ``.hidden.png``) before a backend
sees it. Keys never change meaning: a stored file is never overwritten with other content, so
it can be cached forever.

Backends subclass :class:`MediaStorage` (one module each); callers never branch on which.
This module must never touch the filesystem or import a backend.
"""

from __future__ import annotations

import abc
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from monolith.errors import (
    MonolithError,
    NotFound,
    PayloadTooLarge,
    StateUnavailable,
    UnsupportedType,
)

#: The types we store, by the extension their keys end with.
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}

_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}\.(png|jpg|webp)")


class MediaError(MonolithError):
    """Root of the errors about stored files."""


class MediaNotFound(MediaError, NotFound):
    """No file under this key (or not a key this storage could have made): HTTP 404."""


class MediaTooLarge(MediaError, PayloadTooLarge):
    """The upload is larger than allowed: HTTP 413."""


class UnsupportedMedia(MediaError, UnsupportedType):
    """The upload's content is not a type we accept, whatever its name says: HTTP 415."""


class MediaUnavailable(MediaError, StateUnavailable):
    """The storage cannot take or give files right now (disk full, bucket down): HTTP 503."""

    public = "file storage is unavailable"


def new_key(extension: str) -> str:
    """A fresh random key with ``extension`` (one of :data:`CONTENT_TYPES`)."""
    if extension not in CONTENT_TYPES:
        raise ValueError(f"no content type for extension {extension!r}")
    return f"{secrets.token_urlsafe(24)}.{extension}"


def check_key(key: str) -> str:
    """``key`` when it has the shape of a key we make; :class:`MediaNotFound` otherwise."""
    if not _KEY.fullmatch(key):
        raise MediaNotFound("no such file")
    return key


def content_type(key: str) -> str:
    """The content type of a (checked) key's file."""
    return CONTENT_TYPES[check_key(key).rsplit(".", 1)[1]]


#: About the size of the chunks a stored file is served in (a bucket's may be larger).
CHUNK = 256 * 1024


@dataclass(frozen=True)
class MediaFile:
    """A stored file being read: its size, and its bytes in chunks (read once)."""

    size: int
    chunks: AsyncIterator[bytes]


class MediaStorage(abc.ABC):
    """Files by key, seen alike by every worker process that uses the same storage."""

    @property
    @abc.abstractmethod
    def scope(self) -> str:
        """Who sees a stored file: ``"box"`` (this machine) or ``"shared"`` (for ``doctor``)."""

    async def start(self) -> None:  # noqa: B027 - optional hook; a directory needs little
        """Prepare the storage (create a directory, open a client). Idempotent."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` took."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, all or nothing; every worker sees it once this returns."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`MediaNotFound` when there are none."""

    async def open(self, key: str) -> MediaFile:
        """The file under ``key`` as a stream of chunks, for serving it without holding it
        whole in memory; :class:`MediaNotFound` or :class:`MediaUnavailable` are raised
        here, before the first chunk, so that a route can still answer 404 or 503."""
        data = await self.get(key)

        async def whole() -> AsyncIterator[bytes]:
            yield data

        return MediaFile(len(data), whole())

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the file under ``key``; whether there was one."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line description for logs and ``doctor``."""

    async def exists(self, key: str) -> bool:
        try:
            await self.get(key)
        except MediaNotFound:
            return False
        return True

    async def save(self, data: bytes, extension: str) -> str:
        """Store ``data`` under a new random key with ``extension``; returns the key."""
        key = new_key(extension)
        await self.put(key, data)
        return key
