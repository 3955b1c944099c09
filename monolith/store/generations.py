"""Generation tokens shared by every process on the box: a memory-mapped table of 8-byte slots.

A generation names "the current version" of something cached (the catalog, one product, one
profile). A write that changes it *bumps* the generation after its commit; a read takes the
token *before* it reads the data and keeps what it built under that token. A copy made under
an older token is never served again, by any process, once the bump is done: that is how a
process may keep response bytes in its own memory and still never serve them stale.

Why shared memory: a read checks its token on every request, so the check must cost what a
dictionary lookup costs (~0.3 µs here), not a SQLite read (~16 µs) or a write (~45 µs).

Layout: ``SLOTS`` slots of 8 bytes; a name hashes (CRC-32, stable across processes) to one
slot. Two names on one slot share a token, so a bump of one also retires copies of the other:
an extra miss, never a stale read. A bump writes 8 fresh random bytes, and the file is
created full of random bytes, so a token is never reused: not after a bump, not after the
file is deleted and created again (a copy made under the old file's token cannot match).
Reads take no lock: a read racing a bump may see a torn mix of old and new bytes, which
matches no copy anyone made (a miss), and a copy made under it is retired by the next read,
which sees the whole new token.

What this module must never do: hand out a token that a bump could leave unchanged, or keep a
token in the process (every token lives in the shared file).
"""

from __future__ import annotations

import mmap
import os
import zlib
from pathlib import Path

SLOTS = 1 << 16  # 65,536 slots: 512 KiB
_SIZE = 8
FILE_SIZE = SLOTS * _SIZE


def slot_of(name: str) -> int:
    return (zlib.crc32(name.encode()) % SLOTS) * _SIZE


class GenerationTable:
    """The shared table in one file (created on first use, re-opened if replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._path = str(path)  # os.stat on a str costs half of a Path
        self._map: mmap.mmap | None = None
        self._inode: tuple[int, int] | None = None
        self._slots: dict[tuple[str, ...], tuple[int, ...]] = {}

    def _open(self) -> mmap.mmap:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self._path, os.O_RDWR)
        except FileNotFoundError:
            # Built aside, full of random tokens, then linked into place: no process ever maps
            # a half-initialized table. The loser of a race uses the winner's file.
            fresh = f"{self._path}.{os.getpid()}.{os.urandom(4).hex()}"
            with open(fresh, "wb") as out:
                out.write(os.urandom(FILE_SIZE))
            try:
                os.link(fresh, self._path)
            except FileExistsError:
                pass
            finally:
                os.unlink(fresh)
            fd = os.open(self._path, os.O_RDWR)
        try:
            st = os.fstat(fd)
            if st.st_size < FILE_SIZE:
                raise OSError(f"{self.path}: a generation table of {st.st_size} bytes")
            table = mmap.mmap(fd, FILE_SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file
        self._map, self._inode = table, (st.st_dev, st.st_ino)
        return table

    def current(self) -> mmap.mmap:
        """The open table; re-opened when the file was deleted or replaced under us."""
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return self._open()
        if self._map is None or self._inode != (st.st_dev, st.st_ino):
            return self._open()
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._map = self._inode = None

    def read(self, names: tuple[str, ...]) -> bytes:
        """The tokens of ``names``, concatenated (compare it whole with an earlier read)."""
        table = self.current()
        slots = self._slots.get(names)
        if slots is None:
            if len(self._slots) >= 10_000:
                self._slots.clear()
            slots = self._slots[names] = tuple(slot_of(name) for name in names)
        if len(slots) == 2:
            a, b = slots
            return table[a : a + _SIZE] + table[b : b + _SIZE]
        return b"".join([table[at : at + _SIZE] for at in slots])

    def bump(self, names: tuple[str, ...]) -> None:
        """Give each of ``names`` a fresh token; every copy made under the old one is retired."""
        table = self.current()
        fresh = os.urandom(_SIZE * len(names))
        for i, name in enumerate(names):
            at = slot_of(name)
            table[at : at + _SIZE] = fresh[i * _SIZE : (i + 1) * _SIZE]
