"""File storage in a local directory (``$MONOLITH_DATA_DIR/media``), flat: one file per key.

Every worker process of the box sees every file, because they share the directory; Caddy can
serve it directly (``/media/<key>`` is ``<dir>/<key>``). A second box does not see it: for
that, an object-storage backend implements the same interface.

Writes are atomic: a temporary dot-file in the same directory, fsynced, then renamed over the
key, so a reader sees the whole file or none and a crash leaves no half file under a key.
Blocking file I/O runs in a thread. Keys are checked (:func:`~monolith.media.base.check_key`)
before any path is built, and the path is checked again to be inside the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from monolith.files import private_dir
from monolith.media.base import (
    CHUNK,
    MediaFile,
    MediaNotFound,
    MediaStorage,
    MediaUnavailable,
    check_key,
)
from monolith.state import filesystem_scope


class LocalMediaStorage(MediaStorage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def describe(self) -> str:
        return f"local directory {self.root}"

    @property
    def scope(self) -> str:
        """``"shared"`` when the directory is on a network filesystem, else ``"box"``."""
        return filesystem_scope(self.root)

    async def start(self) -> None:
        try:
            await asyncio.to_thread(private_dir, self.root.parent)
            await asyncio.to_thread(self.root.mkdir, exist_ok=True)
        except OSError as exc:
            raise MediaUnavailable(f"cannot create the media directory: {exc}") from exc

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        if path.parent != self.root:  # unreachable with a checked key; kept as a second lock
            raise MediaNotFound("no such file")
        return path

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._write, path, bytes(data))
        except OSError as exc:
            raise MediaUnavailable(f"cannot store the file: {exc.strerror or exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise MediaNotFound("no such file") from None
        except OSError as exc:
            raise MediaUnavailable(f"cannot read the file: {exc.strerror or exc}") from exc

    async def open(self, key: str) -> MediaFile:
        """Read in chunks of :data:`CHUNK` on a thread, so a large file is never held whole."""
        path = self._path(key)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise MediaNotFound("no such file") from None
        except OSError as exc:
            raise MediaUnavailable(f"cannot read the file: {exc.strerror or exc}") from exc

        async def chunks() -> AsyncIterator[bytes]:
            # Opened here, by whoever reads it: a stream never read leaves no file open.
            # (A stored file is never rewritten, only deleted: opened, it reads whole.)
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, CHUNK):
                    yield chunk
            finally:
                handle.close()

        return MediaFile(size, chunks())

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise MediaUnavailable(f"cannot delete the file: {exc.strerror or exc}") from exc
        return True
