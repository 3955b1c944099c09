"""The key/value ``Store`` interface: Litestar's store semantics plus two atomic primitives.

A store holds bytes under string keys, each with an optional time to live. It is what every
worker process shares for caches, rate-limit counters, sessions and locks, so each backend
is correct across processes (memory is the exception: it is per process, for tests).

- Litestar's methods, same meaning: ``get`` (with ``renew_for``), ``set`` (with
  ``expires_in``), ``delete``, ``delete_all`` (this namespace and its children), ``exists``,
  ``expires_in``, ``with_namespace``. A store registered in Litestar's ``StoreRegistry`` makes
  Litestar features that take a store name work across processes.
- Two atomic primitives, from which rate limiters and locks are built as recipes:
  ``incr`` (add to an integer, setting the TTL only when the key is created) and ``add``
  (set only if absent).

Keys: a namespace is a path of segments (``monolith:sessions``); a key ``k`` in it is stored as
``monolith:sessions/k``, so no key of a parent can collide with a key of a child, and a
namespace's ``delete_all`` removes exactly ``<path>/*`` and ``<path>:*``.

This module must never serialize values (no pickle, no JSON): callers hand in bytes (or str,
stored as UTF-8, as Litestar does) and get bytes back. It must never import a driver.
"""

from __future__ import annotations

import abc
import copy
import math
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal, Self

from litestar.stores.base import NamespacedStore

from monolith.state import Scope

#: A time to live: seconds (int or float) or a timedelta.
TTL = int | float | timedelta

_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Lookups answered by this process (``get`` only), and the backend's size when known."""

    hits: int
    misses: int
    size_bytes: int | None = None


class _Counters:
    """Hit/miss counts shared by every namespace view of one store in one process.

    Counted in the process rather than in the backend: diskcache's own statistics turn every
    read into a write transaction, and the metrics exporter sums processes anyway.
    """

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0


def ttl_seconds(ttl: TTL | None) -> float | None:
    """A TTL as positive seconds, or None for "never expires"."""
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"a TTL must be a positive number of seconds, got {ttl!r}")
    return seconds


def remaining(seconds: float) -> int:
    """Seconds left as Litestar reports them: whole, rounded up (a fresh 10 s key says 10)."""
    return max(1, math.ceil(seconds - 1e-6))


def as_bytes(value: object) -> bytes:
    """The stored form of a value: bytes as they are, str as UTF-8, anything else refused."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(
        f"store values are bytes (or str), not {type(value).__name__}: serialize above the store"
    )


def namespace_path(namespace: str) -> tuple[str, ...]:
    """``"a:b"`` -> ``("a", "b")``, each segment checked (letters, digits, ``_.-``)."""
    path = tuple(namespace.split(":"))
    for segment in path:
        check_segment(segment)
    return path


def check_segment(segment: str) -> None:
    if not _SEGMENT.fullmatch(segment):
        raise ValueError(
            f"a namespace is 1-64 of letters, digits and '_.-', got {segment!r}"
            " (':' separates nested namespaces)"
        )


_WINDOW_MEMO = 10_000


class Store(NamespacedStore):
    """A namespaced, TTL-aware byte store shared by processes (see the module docstring).

    Every namespace view of a store shares one backend connection, opened by :meth:`start`
    and closed by :meth:`stop` (the app's lifespan calls them on the root store). Backends
    implement the ``_``-prefixed methods on full keys; validation, namespacing and hit/miss
    counting live here once.
    """

    #: Where the data lives (``doctor`` reports it).
    scope: ClassVar[Scope]

    def __init__(self, namespace: str = "monolith") -> None:
        self._set_path(namespace_path(namespace))
        self._counters = _Counters()
        self._window_ends: dict[str, float] = {}  # shared by namespace views, like the counters

    def _set_path(self, path: tuple[str, ...]) -> None:
        self.namespace: str | None = ":".join(path)
        self._path = path
        self._prefix = self.namespace + "/"

    def with_namespace(self, namespace: str) -> Self:
        """A view of this store in a child namespace; it shares the connection and counters."""
        check_segment(namespace)
        child = copy.copy(self)
        child._set_path((*self._path, namespace))
        return child

    def kept(self, namespace: str) -> Self:
        """A child namespace whose entries are never evicted to make room for other
        namespaces' entries (sessions must not go to make room for cache entries).

        A backend with one size limit over every key keeps these apart (the disk store: a
        directory of its own); on Redis, eviction is the server's ``maxmemory-policy``, which
        ``doctor`` checks.
        """
        return self.with_namespace(namespace)

    # -- lifecycle --------------------------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the backend (directory, connection pool). Idempotent."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close the backend. Idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~monolith.errors.StateUnavailable` unless a write and a read work."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A safe one-line description (no password) for logs and ``doctor``."""

    async def retention_risks(self) -> list[str]:
        """Ways this backend may lose entries before their time to live is up (a server that
        keeps nothing across a restart, an eviction policy that may drop any key), in an
        operator's words; ``doctor`` warns with them about the sessions. Default: none."""
        return []

    async def cleanup(self) -> int:
        """Drop expired entries now (the ``maintenance.cleanup`` job calls it); how many."""
        return 0

    def stats(self) -> StoreStats:
        return StoreStats(self._counters.hits, self._counters.misses, self._size_bytes())

    def _size_bytes(self) -> int | None:
        return None

    # -- Litestar's Store -------------------------------------------------------------------

    async def get(self, key: str, renew_for: TTL | None = None) -> bytes | None:
        """The value, or None when absent or expired; ``renew_for`` resets a TTL (if it had one)."""
        value = await self._get(self._prefix + key, ttl_seconds(renew_for) if renew_for else None)
        if value is None:
            self._counters.misses += 1
        else:
            self._counters.hits += 1
        return value

    async def set(self, key: str, value: str | bytes, expires_in: TTL | None = None) -> None:
        """Store a value, replacing any; ``expires_in`` None (or 0, as in Litestar) = no expiry."""
        await self._set(self._prefix + key, as_bytes(value), ttl_seconds(expires_in or None))

    async def delete(self, key: str) -> None:
        """Remove a key; a missing key is not an error."""
        await self._delete(self._prefix + key)

    async def delete_all(self) -> None:
        """Remove every key of this namespace and of its child namespaces, and nothing else."""
        assert self.namespace is not None
        await self._delete_prefixes(self._prefix, self.namespace + ":")

    async def exists(self, key: str) -> bool:
        return await self._expiry(self._prefix + key) is not False

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds (rounded up) until the key expires; None if absent or without a TTL."""
        expiry = await self._expiry(self._prefix + key)
        return None if expiry is None or expiry is False else remaining(expiry)

    # -- atomic primitives ------------------------------------------------------------------

    async def incr(self, key: str, amount: int = 1, expires_in: TTL | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` and return the new value, atomically.

        An absent (or expired) key counts as 0 and is created with TTL ``expires_in``; an
        existing key keeps its TTL (so a counter created with a TTL is a fixed window that
        starts at its first increment). Values are stored as ASCII decimal (``get`` returns
        ``b"3"``). A value that is not an integer raises ``ValueError``.
        """
        return await self._incr(self._prefix + key, int(amount), ttl_seconds(expires_in))

    async def add(self, key: str, value: str | bytes, expires_in: TTL | None = None) -> bool:
        """Set ``key`` only if it is absent (or expired); True when this call set it."""
        return await self._add(self._prefix + key, as_bytes(value), ttl_seconds(expires_in))

    async def hit_window(self, key: str, period: int) -> tuple[int, float]:
        """Count one hit of ``key`` in a fixed window of ``period`` seconds that opens with
        its first hit, atomically across processes: the rate limiter's primitive.

        Returns (hits in the current window, this one included; seconds until it ends). Its
        counter lives apart from ``get``/``set`` keys on some backends: use it only through
        this method.
        """
        return await self._hit_window(self._prefix + "window/" + key, period)

    async def _hit_window(self, key: str, period: int) -> tuple[int, float]:
        # Generic: an incr whose TTL the first hit sets. The window's end costs a second
        # round trip only the first time this process sees a window another process opened.
        count = await self._incr(key, 1, float(period))
        now = time.monotonic()
        ends = self._window_ends
        if count == 1:
            end = now + period
        else:
            end = ends.get(key, 0.0)
            if end <= now:
                left = await self._expiry(key)
                end = now + (period if left is None or left is False else max(left, 0.0))
        if len(ends) >= _WINDOW_MEMO:
            ends.clear()
        ends[key] = end
        return count, end - now

    # -- what a backend implements, on full keys ---------------------------------------------

    @abc.abstractmethod
    async def _get(self, key: str, renew: float | None) -> bytes | None: ...

    @abc.abstractmethod
    async def _set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def _delete_prefixes(self, *prefixes: str) -> None:
        """Remove every key starting with one of ``prefixes``."""

    @abc.abstractmethod
    async def _expiry(self, key: str) -> float | Literal[False] | None:
        """Seconds left, None when the key has no TTL, False when the key is absent."""

    @abc.abstractmethod
    async def _incr(self, key: str, amount: int, ttl: float | None) -> int: ...

    @abc.abstractmethod
    async def _add(self, key: str, value: bytes, ttl: float | None) -> bool: ...
