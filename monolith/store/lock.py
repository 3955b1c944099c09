"""A lock held across processes (and boxes, on Redis), built on :meth:`Store.add`.

``add`` is atomic in every shared backend, so exactly one caller creates the key and holds the
lock; the key's TTL frees the lock if its holder dies. What it is not: a fencing lock. A holder
that overruns its TTL may find the lock taken by another; pick a TTL well above the work.
Release checks the owner token before deleting, so a holder that overran cannot free the next
holder's lock except in the instant between that check and the delete (the interface has no
compare-and-delete, on purpose: it stays at Litestar's methods plus ``incr`` and ``add``).
"""

from __future__ import annotations

import asyncio
import secrets
from types import TracebackType

from monolith.errors import StateUnavailable
from monolith.store.base import Store


class LockTimeout(StateUnavailable, TimeoutError):
    """The lock stayed held by another owner for longer than the caller would wait."""


class Lock:
    """``async with Lock(store, "reindex", ttl=30):`` runs the block in one process at a time."""

    def __init__(
        self, store: Store, name: str, *, ttl: float = 30.0, wait: float | None = 10.0
    ) -> None:
        self.store = store
        self.key = f"lock:{name}"
        self.ttl = ttl
        self.wait = wait
        self.token = b""

    async def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; waits up to ``wait`` seconds (forever if None) unless not blocking."""
        token = secrets.token_hex(16).encode()
        loop = asyncio.get_running_loop()
        deadline = None if self.wait is None else loop.time() + self.wait
        delay = 0.005
        while not await self.store.add(self.key, token, expires_in=self.ttl):
            if not blocking or (deadline is not None and loop.time() >= deadline):
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        self.token = token
        return True

    async def release(self) -> None:
        if self.token and await self.store.get(self.key) == self.token:
            await self.store.delete(self.key)
        self.token = b""

    async def locked(self) -> bool:
        return await self.store.exists(self.key)

    async def __aenter__(self) -> Lock:
        if not await self.acquire():
            raise LockTimeout(f"lock {self.key!r} still held after {self.wait}s")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()
