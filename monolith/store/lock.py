"""A lock held across processes (and boxes, on Redis), built on the store's primitives.

``add`` is atomic in every shared backend, so exactly one caller creates the key (holding a
random token) and holds the lock; the key's TTL frees the lock if its holder dies. While the
holder runs, :func:`keep` extends the TTL every third of it with ``renew_if``, so work longer
than the TTL keeps the lock; release is ``delete_if`` with the holder's token, so a holder
whose lock lapsed anyway (its event loop blocked past the TTL) never frees the next holder's.

What it is not: a fencing lock. A holder blocked past its TTL may still be running when the
next one starts; keep a blocking section well under the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from types import TracebackType

from monolith.errors import StateUnavailable
from monolith.store.base import Store


class LockTimeout(StateUnavailable, TimeoutError):
    """The lock stayed held by another owner for longer than the caller would wait."""


def new_token() -> bytes:
    return secrets.token_hex(16).encode()


def keep(store: Store, key: str, token: bytes, ttl: float) -> asyncio.Task[None]:
    """Extend ``key`` to ``ttl`` every ``ttl / 3`` seconds while it holds ``token``; cancel the
    task when the work is done. It ends by itself once the key is no longer ``token``'s."""
    return asyncio.get_running_loop().create_task(_keep(store, key, token, ttl))


async def _keep(store: Store, key: str, token: bytes, ttl: float) -> None:
    task = asyncio.current_task()
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            if not await store.renew_if(key, token, ttl):
                return  # lapsed and taken (or deleted): nothing of ours left to keep
        except StateUnavailable:
            pass  # the store may be back before the TTL runs out: try again next time
        # Cancelled during the command: redis-py may turn the cancellation into a connection
        # error (or finish the command), and a keeper that went on would keep the lock, and
        # its holder's release waiting for the keeper, forever (11 of 300 cancels at random
        # points of a 1 ms renewal cycle).
        if task is not None and task.cancelling():
            return


async def let_go(store: Store, key: str, token: bytes, keeper: asyncio.Task[None] | None) -> bool:
    """Stop extending and delete ``key`` if it still holds ``token``; True when it did."""
    if keeper is not None:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    return await store.delete_if(key, token)


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
        self._keeper: asyncio.Task[None] | None = None

    async def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; waits up to ``wait`` seconds (forever if None) unless not blocking."""
        token = new_token()
        loop = asyncio.get_running_loop()
        deadline = None if self.wait is None else loop.time() + self.wait
        delay = 0.005
        while not await self.store.add(self.key, token, expires_in=self.ttl):
            if not blocking or (deadline is not None and loop.time() >= deadline):
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        self.token = token
        self._keeper = keep(self.store, self.key, token, self.ttl)
        return True

    async def release(self) -> bool:
        """Free the lock if this holder still has it; False when it had lapsed meanwhile."""
        token, keeper = self.token, self._keeper
        self.token, self._keeper = b"", None
        if not token:
            return False
        return await let_go(self.store, self.key, token, keeper)

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
