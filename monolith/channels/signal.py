"""A change counter in the box's shared memory: "was anything published since I last looked?"

The database pub/sub backend on SQLite has no way to be told of a commit made by another
process, so its readers look now and then. Reading this counter (8 bytes of a memory-mapped
file next to the database) costs nothing next to a query, so a reader queries only when the
counter moved: an idle box runs no pub/sub query at all.

Publishers :meth:`bump` it after their commit. Concurrent bumps may both write the same value
(no lock): that is fine, because a reader only asks whether the value *changed* since it read
it before its last query, and each bump happens after its own commit, so a reader that sees the
new value queries after every commit that led to it.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("<Q")


class ChangeSignal:
    """The counter in the file ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < _COUNTER.size:
                    os.ftruncate(fd, _COUNTER.size)
                self._map = mmap.mmap(fd, _COUNTER.size)
            finally:
                os.close(fd)
        return self._map

    def value(self) -> int:
        value: int = _COUNTER.unpack_from(self._mapped())[0]
        return value

    def bump(self) -> None:
        area = self._mapped()
        _COUNTER.pack_into(area, 0, (_COUNTER.unpack_from(area)[0] + 1) % (1 << 64))

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
