"""Read-through caching of async functions in the shared store: ``@cached`` and invalidation.

Declare a cached read where it is defined, with its TTL and how it goes stale::

    @cached("product", ttl=300, strategy="invalidate-on-write")
    async def load_product(svc: Services, product_id: int) -> Product | None: ...

    await load_product(svc, 5)                   # served from the store when present
    await svc.cache.invalidate("product", 5)     # after every write that changes product 5

- The first argument carries the :class:`Cache` (``svc.cache``); the others form the key,
  bound to the signature (so ``f(svc, 5)`` and ``f(svc, product_id=5)`` share one entry) and
  encoded as canonical JSON. Values are encoded with msgspec JSON and decoded to the
  function's return annotation; ``-> bytes`` (or ``bytes | None``) is stored as is, so a
  cached response body is sent without decoding and re-encoding.
- ``strategy`` is written down at the declaration: ``"ttl-only"`` entries may be up to ``ttl``
  stale; ``"invalidate-on-write"`` entries are kept under *generation tokens*
  (:meth:`Store.generations`: one for the prefix, one for the entry), taken before the value is
  read, and :meth:`Cache.invalidate` / :meth:`Cache.invalidate_all` bump the entry's or the
  prefix's token after the write commits: one write, however many entries it retires (they
  expire by their TTL). Every worker reads the tokens on every lookup, so an invalidation is
  seen by every worker at once; the same tokens let a process keep a copy of a response
  (``web/fastpath.py``), since :func:`recording` says which tokens a request's reads used.
- Stampede protection: on a miss, one caller per key in the whole deployment recomputes (it
  takes a fill lock with ``add``, extends it while it computes, and releases it with
  ``delete_if``, so only the holder ever frees it); the others in this process share its
  result, and those in other processes wait for the value to appear. The lock costs two store
  writes and its waiters poll from 2 ms up; a function whose last computation in this process
  took under ``SHARED_FILL_ABOVE`` (20 ms) is cheaper to run once per process than to wait
  for, so its miss computes at once (still once per process: concurrent callers share it) and
  stores with one write. Catalog pages after an order are this case: ~0.3 ms to compute,
  retired many times a second.
- Early recomputation (``beta=``, off by default): a warm entry is recomputed before it
  expires, with a probability that rises as expiry nears and with how long the computation
  took (probabilistic early expiration, "XFetch", as diskcache's ``memoize_stampede``). The
  one caller that takes the fill lock recomputes; everyone else keeps getting the cached
  value, so a hot key never goes cold. Such entries carry 16 bytes of header (expiry time,
  computation time) before the value.
- A recompute that raced a write never puts the old value back: it stores under the tokens it
  read before computing, which the write's bump has retired.
- The store being down makes the function run uncached (a cache never turns a working
  database into errors); invalidation failures are raised, since the caller's write succeeded
  and its readers would otherwise see old data.

This module must never pickle, and never hold a connection at import time: the registry below
is declarations only.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import inspect
import math
import random
import struct
import time
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

import msgspec

from monolith.errors import StateUnavailable
from monolith.store.base import Store, check_segment
from monolith.store.lock import keep, let_go, new_token

Strategy = Literal["invalidate-on-write", "ttl-only"]
P = ParamSpec("P")
R = TypeVar("R")
OwnerT = TypeVar("OwnerT", bound="HasCache")

_MAX_KEY = 200
_EARLY = struct.Struct("<dd")  # wall-clock expiry, seconds the computation took

#: One ``invalidate-on-write`` lookup: (prefix, full generation keys, the tokens it used).
Read = tuple[str, tuple[str, ...], bytes]
_reads: contextvars.ContextVar[list[Read] | None] = contextvars.ContextVar(
    "cache_reads", default=None
)


def recording(reads: list[Read] | None) -> contextvars.Token[list[Read] | None]:
    """Append every ``invalidate-on-write`` lookup of this context to ``reads`` (None: stop);
    reset with ``_reads.reset(token)`` through :func:`stop_recording`."""
    return _reads.set(reads)


def stop_recording(token: contextvars.Token[list[Read] | None]) -> None:
    _reads.reset(token)


class HasCache(Protocol):
    """What a cached function's first argument provides (``Services`` does)."""

    @property
    def cache(self) -> Cache: ...


@dataclass(eq=False)
class Declaration:
    """One ``@cached`` function: its prefix, TTL, staleness strategy and codec."""

    prefix: str
    ttl: float
    strategy: Strategy
    fn: Callable[..., Awaitable[Any]]
    #: Early recomputation: None (never), or XFetch's beta (1.0 is the usual; higher, earlier).
    beta: float | None = None
    signature: inspect.Signature = field(init=False)
    _codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]] | None = field(
        init=False, default=None
    )
    _plain: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.signature = inspect.signature(self.fn)
        params = list(self.signature.parameters.values())[1:]
        # Every argument passed positionally, none defaulted: the key needs no binding (which
        # costs more than the store read it guards).
        self._plain = len(params) if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params) else -1

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not kwargs and len(args) == self._plain:
            values: Any = args
        else:
            try:
                bound = self.signature.bind(None, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"cache {self.prefix!r}: {exc}") from None
            bound.apply_defaults()
            values = list(bound.arguments.values())[1:]
        text = msgspec.json.encode(values, order="deterministic").decode()
        if len(text) > _MAX_KEY:
            return "#" + hashlib.sha256(text.encode()).hexdigest()
        return text

    def codec(self) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
        # Resolved on first use: annotations may name types defined after the decorator ran.
        if self._codec is None:
            returns = typing.get_type_hints(self.fn).get("return", Any)
            if returns is bytes:
                self._codec = (bytes, bytes)
            elif returns == bytes | None:
                self._codec = (_encode_optional_bytes, _decode_optional_bytes)
            else:
                decoder = msgspec.json.Decoder(returns)
                self._codec = (msgspec.json.encode, decoder.decode)
        return self._codec

    def wrap(self, raw: bytes, took: float) -> bytes:
        """The stored form of ``raw``: with the early-recomputation header when ``beta`` is set."""
        if self.beta is None:
            return raw
        return _EARLY.pack(time.time() + self.ttl, took) + raw

    def unwrap(self, stored: bytes) -> tuple[bytes, bool] | None:
        """(the value's bytes, whether to recompute it now), or None for a damaged entry."""
        if self.beta is None:
            return stored, False
        if len(stored) < _EARLY.size:
            return None
        expiry, took = _EARLY.unpack_from(stored)
        # XFetch: recompute when now - took * beta * ln(u) passes the expiry, u in (0, 1].
        early = time.time() - took * self.beta * math.log(1.0 - random.random()) >= expiry
        return stored[_EARLY.size :], early


def _encode_optional_bytes(value: bytes | None) -> bytes:
    return b"" if value is None else b"=" + value


def _decode_optional_bytes(raw: bytes) -> bytes | None:
    if not raw:
        return None
    if raw[:1] != b"=":
        raise msgspec.DecodeError("not an optional-bytes entry")
    return raw[1:]


_DECLARED: dict[str, Declaration] = {}


def cached(
    prefix: str, *, ttl: float, strategy: Strategy, beta: float | None = None
) -> Callable[
    [Callable[Concatenate[OwnerT, P], Awaitable[R]]],
    Callable[Concatenate[OwnerT, P], Awaitable[R]],
]:
    """Cache an async function's results under ``prefix`` for ``ttl`` seconds (see module doc).

    ``beta``: recompute warm entries early (XFetch); None (the default) never does.
    """
    check_segment(prefix)
    if ttl <= 0:
        raise ValueError(f"cache {prefix!r}: ttl must be positive")
    if beta is not None and not beta > 0:
        raise ValueError(f"cache {prefix!r}: beta must be positive")

    def decorate(
        fn: Callable[Concatenate[OwnerT, P], Awaitable[R]],
    ) -> Callable[Concatenate[OwnerT, P], Awaitable[R]]:
        old = _DECLARED.get(prefix)
        if old is not None and old.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"cache prefix {prefix!r} is already used by {old.fn.__qualname__}")
        declaration = Declaration(prefix, float(ttl), strategy, fn, beta)
        _DECLARED[prefix] = declaration

        @functools.wraps(fn)
        async def wrapper(owner: OwnerT, /, *args: P.args, **kwargs: P.kwargs) -> R:
            result: R = await owner.cache.fetch(declaration, owner, args, kwargs)
            return result

        return wrapper

    return decorate


def declaration(prefix: str) -> Declaration:
    try:
        return _DECLARED[prefix]
    except KeyError:
        raise KeyError(f"no @cached function uses the prefix {prefix!r}") from None


class CacheMetrics(Protocol):
    """Where a :class:`Cache` reports each lookup (the app's Prometheus metrics)."""

    def cache_lookup(self, prefix: str, hit: bool) -> None: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class Cache:
    """This process's view of the cache: a namespace of the shared store, e.g. ``root:cache``."""

    def __init__(
        self, store: Store, *, lock_ttl: float = 10.0, metrics: CacheMetrics | None = None
    ) -> None:
        self.store = store
        self.lock_ttl = lock_ttl
        self.metrics = metrics
        self._spaces: dict[str, Store] = {}
        self._flights: dict[str, asyncio.Future[bytes]] = {}
        self._stats: dict[str, CacheStats] = {}
        self._names: dict[tuple[str, str], tuple[str, ...]] = {}
        #: Seconds the last computation of each prefix took in this process.
        self._took: dict[str, float] = {}

    def stats(self) -> dict[str, CacheStats]:
        """Hits and misses per prefix in this process (for metrics)."""
        return dict(self._stats)

    def _space(self, prefix: str) -> Store:
        space = self._spaces.get(prefix)
        if space is None:
            space = self._spaces[prefix] = self.store.with_namespace(prefix)
        return space

    def _count(self, prefix: str, hit: bool) -> None:
        stats = self._stats.get(prefix)
        if stats is None:
            stats = self._stats[prefix] = CacheStats()
        if hit:
            stats.hits += 1
        else:
            stats.misses += 1
        if self.metrics is not None:
            self.metrics.cache_lookup(prefix, hit)

    async def fetch(
        self, decl: Declaration, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The cached value of ``decl.fn(owner, *args, **kwargs)``, computing it on a miss."""
        encode, decode = decl.codec()
        key = decl.key(args, kwargs)
        space = self._space(decl.prefix)
        reads = _reads.get()
        try:
            if decl.strategy != "invalidate-on-write":
                if reads is not None:
                    reads.append((decl.prefix, (), b""))  # not under tokens: no copy of it
            else:
                names = self._names.get((decl.prefix, key))
                if names is None:
                    if len(self._names) >= _NAMES_MEMO:
                        self._names.clear()
                    names = self._names[(decl.prefix, key)] = self.store.generation_keys(
                        (decl.prefix, f"{decl.prefix}/{key}")
                    )
                token = await self.store.tokens(names)
                if reads is not None:
                    reads.append((decl.prefix, names, token))
                key = token.hex() + "/" + key
            raw = await space.get(key)
        except StateUnavailable:
            if reads is not None:
                reads.append((decl.prefix, (), b""))
            self._count(decl.prefix, hit=False)
            return await decl.fn(owner, *args, **kwargs)
        if raw is not None:
            early = False
            if decl.beta is not None:
                unwrapped = decl.unwrap(raw)
                raw, early = (None, False) if unwrapped is None else unwrapped
            if raw is not None:
                try:
                    value = decode(raw)
                except msgspec.DecodeError:
                    pass  # damaged or from an older shape of the type: recompute
                else:
                    if early:
                        return await self._refresh(decl, space, key, value, owner, args, kwargs)
                    self._count(decl.prefix, hit=True)
                    return value
        self._count(decl.prefix, hit=False)

        flight_key = f"{decl.prefix}/{key}"
        while (flight := self._flights.get(flight_key)) is not None:
            try:
                return decode(await asyncio.shield(flight))
            except asyncio.CancelledError:
                if not flight.cancelled():
                    raise  # this caller was cancelled, not the one computing
        flight = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = flight
        try:
            value, raw = await self._fill(
                decl, space, key, encode, lambda: decl.fn(owner, *args, **kwargs)
            )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                flight.cancel()
            else:
                flight.set_exception(exc)
                flight.exception()  # retrieved here: followers may be none
            raise
        else:
            flight.set_result(raw)
            return value if value is not _FROM_OTHER else decode(raw)
        finally:
            del self._flights[flight_key]

    async def _refresh(
        self,
        decl: Declaration,
        space: Store,
        key: str,
        value: Any,
        owner: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Early recomputation of a warm entry: only the caller that takes the fill lock
        recomputes (and gets the new value); the others are served ``value`` meanwhile."""
        lock, token = key + "#fill", new_token()
        try:
            if not await space.add(lock, token, expires_in=self.lock_ttl):
                self._count(decl.prefix, hit=True)
                return value
        except StateUnavailable:
            self._count(decl.prefix, hit=True)
            return value
        self._count(decl.prefix, hit=False)
        encode = decl.codec()[0]
        fresh, _ = await self._store_computed(
            decl,
            space,
            key,
            lock,
            token,
            encode,
            lambda: decl.fn(owner, *args, **kwargs),
        )
        return fresh

    async def _fill(
        self,
        decl: Declaration,
        space: Store,
        key: str,
        encode: Callable[[Any], bytes],
        compute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bytes]:
        if self._took.get(decl.prefix, math.inf) < SHARED_FILL_ABOVE:
            return await self._compute_and_store(decl, space, key, encode, compute)
        lock, token = key + "#fill", new_token()
        loop = asyncio.get_running_loop()
        try:
            while not await space.add(lock, token, expires_in=self.lock_ttl):
                raw = await self._wait_for_other(
                    decl, space, key, lock, loop.time() + self.lock_ttl
                )
                if raw is not None:
                    return _FROM_OTHER, raw
            # Double-check under the lock: whoever held it may have stored the value between
            # our miss and our add (then the lock was free, and the value is there).
            stored = await space.get(key)
            unwrapped = None if stored is None else decl.unwrap(stored)
            if unwrapped is not None:
                await space.delete_if(lock, token)
                return _FROM_OTHER, unwrapped[0]
        except StateUnavailable:
            value = await compute()
            return value, encode(value)
        return await self._store_computed(decl, space, key, lock, token, encode, compute)

    async def _store_computed(
        self,
        decl: Declaration,
        space: Store,
        key: str,
        lock: str,
        token: bytes,
        encode: Callable[[Any], bytes],
        compute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bytes]:
        """Compute under the fill lock (kept alive meanwhile), store, and release it."""
        keeper = keep(space, lock, token, self.lock_ttl)
        try:
            return await self._compute_and_store(decl, space, key, encode, compute)
        finally:
            try:
                await let_go(space, lock, token, keeper)
            except StateUnavailable:
                pass  # the lock's TTL frees it

    async def _compute_and_store(
        self,
        decl: Declaration,
        space: Store,
        key: str,
        encode: Callable[[Any], bytes],
        compute: Callable[[], Awaitable[Any]],
    ) -> tuple[Any, bytes]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        value = await compute()
        took = self._took[decl.prefix] = loop.time() - started
        raw = encode(value)
        try:
            await space.set(key, decl.wrap(raw, took), expires_in=decl.ttl)
        except StateUnavailable:
            pass
        return value, raw

    async def _wait_for_other(
        self, decl: Declaration, space: Store, key: str, lock: str, deadline: float
    ) -> bytes | None:
        """Poll for the value another process is computing; None when it gave up or expired."""
        delay = 0.002
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            stored = await space.get(key)
            if stored is not None:
                unwrapped = decl.unwrap(stored)
                if unwrapped is not None:
                    return unwrapped[0]
            if not await space.exists(lock):
                return None
        return None

    async def invalidate(self, prefix: str, *args: Any, **kwargs: Any) -> None:
        """Forget the entry of ``prefix`` for these arguments, everywhere; call after the commit.

        ``invalidate-on-write``: one bump of the entry's generation. ``ttl-only``: a delete.
        """
        decl = declaration(prefix)
        key = decl.key(args, kwargs)
        if decl.strategy == "invalidate-on-write":
            await self.store.bump(f"{prefix}/{key}")
            return
        space = self._space(prefix)
        await space.delete(key)

    async def invalidate_all(self, prefix: str) -> None:
        """Forget every entry of ``prefix`` (e.g. every catalog page after a product write):
        one bump of the prefix's generation (``ttl-only``: a delete of the namespace)."""
        decl = declaration(prefix)
        if decl.strategy == "invalidate-on-write":
            await self.store.bump(prefix)
            return
        await self._space(prefix).delete_all()

    async def invalidate_many(
        self, entries: Iterable[tuple[str, tuple[Any, ...]]] = (), prefixes: Iterable[str] = ()
    ) -> None:
        """:meth:`invalidate` each ``(prefix, args)`` of ``entries`` and :meth:`invalidate_all`
        each of ``prefixes``, with the generation bumps in one store call (one round trip)."""
        names: list[str] = []
        for prefix, args in entries:
            if declaration(prefix).strategy == "invalidate-on-write":
                names.append(f"{prefix}/{declaration(prefix).key(args, {})}")
            else:
                await self.invalidate(prefix, *args)
        for prefix in prefixes:
            if declaration(prefix).strategy == "invalidate-on-write":
                names.append(prefix)
            else:
                await self.invalidate_all(prefix)
        if names:
            await self.store.bump(*names)

    def count_hit(self, prefix: str) -> None:
        """A hit served from a copy of a response (``web/fastpath.py``) counts as a cache hit."""
        self._count(prefix, hit=True)


_FROM_OTHER: Any = object()
#: A computation that took less than this (seconds) runs once per process on a miss, without
#: the deployment-wide fill lock (see the module docstring).
SHARED_FILL_ABOVE = 0.02
_NAMES_MEMO = 10_000
