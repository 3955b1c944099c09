"""In-process store: a dict of (value, deadline). For tests and single-process tools only.

It is real and passes the same conformance suite as the shared backends, but its data lives
in one process: two workers each get their own, so it must never back a multi-worker server
(``doctor`` reports its scope as ``process``). Each operation runs without awaiting, so it is
atomic within the event loop without a lock.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from monolith.errors import NotStarted
from monolith.state import Scope
from monolith.store.base import Store

_Entry = tuple[bytes, float | None]  # value, monotonic deadline (None: no expiry)


class _Data:
    """The dict every namespace view shares; ``None`` until started."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] | None = None


class MemoryStore(Store):
    scope: ClassVar[Scope] = "process"

    def __init__(self, namespace: str = "monolith") -> None:
        super().__init__(namespace)
        self._data = _Data()

    async def start(self) -> None:
        if self._data.entries is None:
            self._data.entries = {}

    async def stop(self) -> None:
        self._data.entries = None

    async def ping(self) -> None:
        self._entries()

    def describe(self) -> str:
        return "memory:// (this process only)"

    async def cleanup(self) -> int:
        entries, now = self._entries(), time.monotonic()
        expired = [k for k, (_, end) in entries.items() if end is not None and end <= now]
        for key in expired:
            del entries[key]
        return len(expired)

    def _entries(self) -> dict[str, _Entry]:
        entries = self._data.entries
        if entries is None:
            raise NotStarted("the store was used before start(); the app lifespan starts it")
        return entries

    def _live(self, key: str) -> _Entry | None:
        entries = self._entries()
        entry = entries.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= time.monotonic():
            del entries[key]
            return None
        return entry

    async def _get(self, key: str, renew: float | None) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        if renew is not None and entry[1] is not None:
            self._entries()[key] = (entry[0], time.monotonic() + renew)
        return entry[0]

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._entries()[key] = (value, None if ttl is None else time.monotonic() + ttl)

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
        return None if entry[1] is None else entry[1] - time.monotonic()

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
