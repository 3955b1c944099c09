"""The key/value ``Store`` interface: Litestar's store semantics plus a few atomic primitives.

A store holds bytes under string keys, each with an optional time to live. It is what every
worker process shares for caches, rate-limit counters, sessions and locks, so each backend
is correct across processes (memory is the exception: it is per process, for tests).

- Litestar's methods, same meaning: ``get`` (with ``renew_for``), ``set`` (with
  ``expires_in``, or ``keep_ttl``), ``delete``, ``delete_all`` (this namespace and its
  children), ``exists``, ``expires_in`` (-1 for a key without expiry, None for a missing key),
  ``delete_expired``, ``with_namespace``, ``async with``. A store registered in Litestar's
  ``StoreRegistry`` makes Litestar features that take a store name work across processes.
- A store starts itself on first use (a flag check); ``start()`` opens it eagerly and
  ``stop()`` closes it (the next use opens it again).
- Atomic primitives, from which rate limiters and locks are built as recipes: ``incr`` (add
  to an integer, setting the TTL only when the key is created), ``add`` (set only if absent),
  and ``delete_if`` / ``renew_if`` (delete / extend a key only while it holds a given value:
  what lets a lock be released and extended by its holder alone).

Keys follow Litestar's ``RedisStore``: a key ``k`` of namespace ``shop`` is stored as
``shop:k``, and the child namespace ``sessions`` of ``shop`` is ``shop_sessions`` (keys
``shop_sessions:k``), so keys written by Litestar's ``RedisStore`` under the same names are
read by this one. A namespace's ``delete_all`` removes ``<ns>:*`` and its children's
``<ns>_*``: a namespace whose name is another's plus ``_…`` is taken for a child of it.

Time is the wall clock (``time.time``), as in Litestar's stores, so tests that travel in time
(time-machine, freezegun) move expiry on the memory and disk stores.

This module must never serialize values (no pickle, no JSON): callers hand in bytes (or str,
stored as UTF-8, as Litestar does) and get bytes back. It must never import a driver.
"""

from __future__ import annotations

import abc
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import ClassVar, Literal, Self

from litestar.stores.base import NamespacedStore

from monolith.state import Scope

#: A time to live: seconds (int or float) or a timedelta.
TTL = int | float | timedelta

_CHILD = re.compile(r"[A-Za-z0-9_.-]+")


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


def check_root(namespace: str) -> str:
    """A root namespace is any non-empty name (Litestar's ``RedisStore`` takes any)."""
    if not namespace or not namespace.isprintable():
        raise ValueError(f"a namespace is a non-empty printable name, got {namespace!r}")
    return namespace


def check_segment(segment: str) -> None:
    """A child namespace name: letters, digits and ``_.-`` (``:`` separates a namespace from
    its keys, so it would make a child's keys look like its parent's)."""
    if not _CHILD.fullmatch(segment):
        raise ValueError(f"a child namespace is letters, digits and '_.-', got {segment!r}")


_WINDOW_MEMO = 10_000
#: A generation key outlives every entry kept under it; when it expires, a new token is made.
GENERATION_TTL = 7 * 86_400


class Store(NamespacedStore):
    """A namespaced, TTL-aware byte store shared by processes (see the module docstring).

    Every namespace view of a store shares one backend connection, opened on first use (or
    by :meth:`start`) and closed by :meth:`stop`. Backends implement the ``_``-prefixed
    methods on full keys; validation, namespacing and hit/miss counting live here once.
    """

    #: Where the data lives (``doctor`` reports it).
    scope: ClassVar[Scope]

    def __init__(self, namespace: str = "monolith") -> None:
        self._set_namespace(check_root(namespace))
        self._counters = _Counters()
        self._window_ends: dict[str, float] = {}  # shared by namespace views, like the counters

    def _set_namespace(self, namespace: str) -> None:
        self.namespace: str | None = namespace
        self._prefix = namespace + ":"
        self._children = namespace + "_"

    def with_namespace(self, namespace: str) -> Self:
        """A view of this store in a child namespace; it shares the connection and counters."""
        check_segment(namespace)
        child = object.__new__(type(self))
        child.__dict__.update(self.__dict__)
        child._set_namespace(self._children + namespace)
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

    async def start(self) -> None:
        """Open the backend (directory, connection pool) now rather than on first use."""
        self._open()

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the backend if it is not open. Idempotent; called by the first use."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close the backend (every namespace view's). Idempotent; a later use reopens it."""

    async def __aenter__(self) -> None:
        await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.stop()

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

    async def delete_expired(self) -> int:
        """Drop expired entries now (Litestar's name); how many. Redis expires keys itself."""
        return 0

    async def cleanup(self) -> int:
        """:meth:`delete_expired`, under the name the ``maintenance.cleanup`` job calls."""
        return await self.delete_expired()

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

    async def set(
        self,
        key: str,
        value: str | bytes,
        expires_in: TTL | None = None,
        keep_ttl: bool = False,
    ) -> None:
        """Store a value, replacing any; ``expires_in`` None (or 0, as in Litestar) = no expiry.

        ``keep_ttl``: keep the TTL the key has (none if it is absent), as Redis' ``KEEPTTL``;
        it cannot be combined with ``expires_in``.
        """
        if keep_ttl:
            if expires_in is not None:
                raise ValueError(
                    "Cannot set both 'expires_in' and 'keep_ttl': these options are mutually"
                    " exclusive"
                )
            await self._set_keep_ttl(self._prefix + key, as_bytes(value))
            return
        await self._set(self._prefix + key, as_bytes(value), ttl_seconds(expires_in or None))

    async def delete(self, key: str) -> None:
        """Remove a key; a missing key is not an error."""
        await self._delete(self._prefix + key)

    async def delete_all(self) -> None:
        """Remove every key of this namespace and of its child namespaces (see the module doc)."""
        await self._delete_prefixes(self._prefix, self._children)

    async def exists(self, key: str) -> bool:
        return await self._expiry(self._prefix + key) is not False

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds until the key expires, as Litestar's stores count them; -1 for a key
        without expiry, None for a missing key."""
        expiry = await self._expiry(self._prefix + key)
        if expiry is False:
            return None
        if expiry is None:
            return -1
        return self._whole_seconds(expiry)

    @staticmethod
    def _whole_seconds(left: float) -> int:
        # Litestar's memory and file stores truncate (a fresh 10 s key says 9).
        return int(left)

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

    async def delete_if(self, key: str, value: str | bytes) -> bool:
        """Delete ``key`` only if it holds ``value``, atomically; True when this call deleted it.

        A lock's release: a holder whose lock expired and was taken by another cannot free it.
        """
        return await self._delete_if(self._prefix + key, as_bytes(value))

    async def renew_if(self, key: str, value: str | bytes, expires_in: TTL) -> bool:
        """Give ``key`` a new TTL only if it holds ``value``, atomically; True when it did.

        A lock's extension: only its holder can keep it.
        """
        seconds = ttl_seconds(expires_in)
        assert seconds is not None
        return await self._renew_if(self._prefix + key, as_bytes(value), seconds)

    async def hit_window(self, key: str, period: int) -> tuple[int, float]:
        """Count one hit of ``key`` in a fixed window of ``period`` seconds that opens with
        its first hit, atomically across processes: the rate limiter's primitive.

        Returns (hits in the current window, this one included; seconds until it ends). Its
        counter lives apart from ``get``/``set`` keys on some backends: use it only through
        this method.
        """
        return await self._hit_window(self._prefix + "window/" + key, period)

    def hit_window_now(self, key: str, period: int) -> tuple[int, float] | None:
        """:meth:`hit_window` without awaiting, when the backend counts on this box (shared
        memory); None when counting takes a round trip (then call :meth:`hit_window`)."""
        return self._hit_window_now(self._prefix + "window/" + key, period)

    def _hit_window_now(self, key: str, period: int) -> tuple[int, float] | None:
        return None

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

    # -- generations ----------------------------------------------------------------------

    def generation_keys(self, names: Iterable[str]) -> tuple[str, ...]:
        """The full keys of generation ``names`` in this namespace (for :meth:`tokens_now`)."""
        return tuple(self._prefix + "gen/" + name for name in names)

    async def generations(self, names: Iterable[str]) -> bytes:
        """The current tokens of ``names``, concatenated: compare with an earlier read to
        know whether any was bumped since (see :mod:`monolith.store.generations`).

        Take the tokens *before* reading what they guard; keep what was read under them.
        A name never bumped has a token too (random, made on first read).
        """
        return await self.tokens(self.generation_keys(names))

    async def tokens(self, keys: tuple[str, ...]) -> bytes:
        """:meth:`generations` by full keys (from :meth:`generation_keys`)."""
        now = self.tokens_now(keys)
        return now if now is not None else await self._generations(keys)

    async def bump(self, *names: str) -> None:
        """Give each of ``names`` a fresh token: whatever was kept under the old one, in any
        process, is never served again. Call after the write that changed it commits."""
        await self._bump(self.generation_keys(names))

    def tokens_now(self, keys: tuple[str, ...]) -> bytes | None:
        """The tokens of full generation ``keys`` without awaiting, when the backend is on
        this box (shared memory); None when reading them takes a round trip."""
        return None

    async def _generations(self, keys: tuple[str, ...]) -> bytes:
        # Generic: one key per generation, created with a random token when absent (a token
        # is never reused, even after the store lost its keys).
        tokens = []
        for key in keys:
            token = await self._get(key, None)
            if token is None:
                await self._add(key, os.urandom(8), GENERATION_TTL)
                token = await self._get(key, None) or b""
            tokens.append(token)
        return b"".join(tokens)

    async def _bump(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            await self._set(key, os.urandom(8), GENERATION_TTL)

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

    @abc.abstractmethod
    async def _set_keep_ttl(self, key: str, value: bytes) -> None: ...

    @abc.abstractmethod
    async def _delete_if(self, key: str, value: bytes) -> bool: ...

    @abc.abstractmethod
    async def _renew_if(self, key: str, value: bytes, ttl: float) -> bool: ...
