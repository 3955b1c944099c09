"""In-process store: a dict of (value, deadline). For tests and single-process tools only.

It is real and passes the same conformance suite as the shared backends, but its data lives
in one process: two workers each get their own, so it must never back a multi-worker server
(``doctor`` reports its scope as ``process``). Each operation runs without awaiting, so it is
atomic within the event loop without a lock. Deadlines are wall-clock (``time.time``), as in
Litestar's ``MemoryStore``, so a test that travels in time moves them.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from monolith.state import Scope
from monolith.store.base import Store

_Entry = tuple[bytes, float | None]  # value, wall-clock deadline (None: no expiry)


class _Data:
    """The dict every namespace view shares; ``None`` until first used (or after ``stop``)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] | None = None


class MemoryStore(Store):
    scope: ClassVar[Scope] = "process"

    def __init__(self, namespace: str = "monolith") -> None:
        super().__init__(namespace)
        self._data = _Data()

    def _open(self) -> None:
        if self._data.entries is None:
            self._data.entries = {}

    async def stop(self) -> None:
        self._data.entries = None

    async def ping(self) -> None:
        self._entries()

    def describe(self) -> str:
        return "memory:// (this process only)"

    async def delete_expired(self) -> int:
        entries, now = self._entries(), time.time()
        expired = [k for k, (_, end) in entries.items() if end is not None and end <= now]
        for key in expired:
            del entries[key]
        return len(expired)

    def _entries(self) -> dict[str, _Entry]:
        entries = self._data.entries
        if entries is None:
            entries = self._data.entries = {}
        return entries

    def _live(self, key: str) -> _Entry | None:
        entries = self._entries()
        entry = entries.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.time():
            del entries[key]
            return None
        return entry

    async def _get(self, key: str, renew: float | None) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        if renew is not None and entry[1] is not None:
            self._entries()[key] = (entry[0], time.time() + renew)
        return entry[0]

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._entries()[key] = (value, None if ttl is None else time.time() + ttl)

    async def _set_keep_ttl(self, key: str, value: bytes) -> None:
        entry = self._live(key)
        self._entries()[key] = (value, None if entry is None else entry[1])

    async def _delete(self, key: str) -> None:
        self._entries().pop(key, None)

    async def _delete_prefixes(self, *prefixes: str) -> None:
        entries = self._entries()
        for key in [k for k in entries if k.startswith(prefixes)]:
            del entries[key]

    async def _expiry(self, key: str) -> float | Literal[False] | None:
        entry = self._live(key)
        if entry is None:
            return False
        return None if entry[1] is None else entry[1] - time.time()

    async def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        entry = self._live(key)
        if entry is None:
            await self._set(key, b"%d" % amount, ttl)
            return amount
        try:
            value = int(entry[0]) + amount
        except ValueError:
            raise ValueError(f"the value at {key!r} is not an integer") from None
        self._entries()[key] = (b"%d" % value, entry[1])
        return value

    async def _add(self, key: str, value: bytes, ttl: float | None) -> bool:
        if self._live(key) is not None:
            return False
        await self._set(key, value, ttl)
        return True

    async def _delete_if(self, key: str, value: bytes) -> bool:
        entry = self._live(key)
        if entry is None or entry[0] != value:
            return False
        del self._entries()[key]
        return True

    async def _renew_if(self, key: str, value: bytes, ttl: float) -> bool:
        entry = self._live(key)
        if entry is None or entry[0] != value:
            return False
        self._entries()[key] = (value, time.time() + ttl)
        return True
