"""Store on Redis: the same keys and semantics shared by every process on every box.

Each operation is one command (``GET``, ``SET ... PX``, ``SET ... NX PX``, ``PTTL``) or one
Lua script where two steps must be one (``incr`` creating a TTL only for a new key, ``get``
that renews, ``delete_if`` / ``renew_if`` comparing the value first), so the primitives are
atomic across processes and boxes.

It is a Litestar ``RedisStore`` (a subclass, with every method its own): the same key layout
(``namespace:key``, children ``namespace_child``) and the same ``_redis`` client attribute, so
code written for Litestar's store, and keys it wrote, work unchanged. ``delete_all``
walks the namespace with ``SCAN`` (it never blocks Redis the way ``KEYS`` or a scanning
script would) and is meant for rare bulk invalidations, not request paths.

A Redis that is down or slow is :class:`~monolith.errors.CacheUnavailable` (HTTP 503 with
Retry-After) within a couple of seconds, never a hang: short socket timeouts, one retry on a
fresh connection (which is what makes the first command after a Redis restart succeed), and
the pool reconnects by itself when Redis is back.

This module is imported only when a ``redis://`` URL is configured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable
from typing import Any, ClassVar, Literal, Self, TypeVar, cast
from urllib.parse import quote, urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    from monolith.errors import ConfigError

    raise ConfigError(
        "a redis:// cache URL needs the driver: pip install 'monolith[redis]'"
    ) from exc

from litestar.stores.redis import RedisStore as LitestarRedisStore
from litestar.types import Empty, EmptyType

from monolith.errors import CacheUnavailable
from monolith.state import Scope
from monolith.store.base import GENERATION_TTL, Store

T = TypeVar("T")

# INCRBY, then a TTL only if this call created the key: a counter's window starts at its first hit.
_INCR = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""
# GET, and a new TTL only for a key that had one (Litestar's renew_for).
_GET_RENEW = """
local value = redis.call('GET', KEYS[1])
if value and redis.call('PTTL', KEYS[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""

# DEL / PEXPIRE only while the key holds the caller's value: a lock freed or kept by its holder.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_GLOB = re.compile(r"([*?\[\]\\])")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: Connections per process; more concurrent commands queue for one (see _Client.open).
POOL_SIZE = 100


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Client:
    """The connection pool every namespace view shares; made on first use."""

    def __init__(self, url: str, timeouts: tuple[float, float]) -> None:
        self.url = url
        self.timeouts = timeouts
        self.redis: aioredis.Redis | None = None
        self.scripts: dict[str, Any] = {}

    def open(self) -> aioredis.Redis:
        redis = self.redis
        if redis is None:
            # Connects on the first command, not here. A burst of requests beyond the pool's
            # connections waits for one (up to the command timeout) instead of failing at once
            # with "Too many connections", as redis-py's default pool does past 100.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=POOL_SIZE,
                timeout=self.timeouts[1],
                socket_connect_timeout=self.timeouts[0],
                socket_timeout=self.timeouts[1],
                retry=Retry(NoBackoff(), 1),
            )
            redis = self.redis = aioredis.Redis(connection_pool=pool, decode_responses=False)
            for name, source in (
                ("incr", _INCR),
                ("get_renew", _GET_RENEW),
                ("delete_if", _DELETE_IF),
                ("renew_if", _RENEW_IF),
            ):
                self.scripts[name] = redis.register_script(source)
        return redis


class RedisStore(Store, LitestarRedisStore):
    scope: ClassVar[Scope] = "shared"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "monolith",
        connect_timeout: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        super().__init__(namespace)
        self._client = _Client(url, (connect_timeout, timeout))

    @classmethod
    def with_client(
        cls,
        url: str = "redis://localhost:6379",
        *,
        db: int | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        namespace: str | EmptyType | None = Empty,
    ) -> Self:
        """Litestar's constructor: a store on ``url`` with the parts given replaced."""
        parts = urlsplit(url)
        user = username if username is not None else parts.username
        secret = password if password is not None else parts.password
        auth = ""
        if user or secret:
            auth = quote(user or "", safe="") + (":" + quote(secret, safe="") if secret else "")
            auth += "@"
        host = parts.hostname or "localhost"
        netloc = f"{auth}{host}:{port or parts.port or 6379}"
        path = f"/{db}" if db is not None else parts.path
        built = urlunsplit((parts.scheme, netloc, path, parts.query, ""))
        if namespace is None:
            raise ValueError("this store always has a namespace (delete_all needs one)")
        return cls(built, namespace="LITESTAR" if namespace is Empty else str(namespace))

    @property
    def _redis(self) -> aioredis.Redis:
        """The client (Litestar's attribute); made on first use, so the store starts itself."""
        return self._client.open()

    @_redis.setter
    def _redis(self, value: aioredis.Redis) -> None:
        self._client.redis = value

    def _open(self) -> None:
        self._client.open()

    async def _shutdown(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        client = self._client
        if client.redis is not None:
            redis, client.redis = client.redis, None
            client.scripts.clear()
            await redis.aclose(close_connection_pool=True)  # the pool is ours

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def retention_risks(self) -> list[str]:
        redis = self._redis
        try:
            # redis-py 5 types the answer with bytes, 8 with optional str: read it as given.
            config: dict[Any, Any] = {}
            for name in ("save", "appendonly", "maxmemory", "maxmemory-policy"):
                config.update(await self._call(redis.config_get(name)))
        except ResponseError as exc:  # CONFIG refused (a managed Redis): say what is unknown
            return [
                f"Redis does not show its configuration ({exc}); check that it persists "
                "sessions and never evicts them"
            ]
        value = {_text(k): _text(v) for k, v in config.items() if k is not None and v is not None}
        risks = []
        if not value.get("save", "").strip() and value.get("appendonly") != "yes":
            risks.append(
                "Redis keeps nothing across a restart (no RDB snapshots, appendonly no): a "
                "restart signs every user out; set appendonly yes (or save)"
            )
        policy = value.get("maxmemory-policy", "noeviction")
        if value.get("maxmemory", "0") != "0" and policy != "noeviction":
            risks.append(
                f"Redis evicts keys when full (maxmemory-policy {policy}): sessions may be "
                "dropped to make room; use noeviction, or a Redis of their own"
            )
        return risks

    def describe(self) -> str:
        parts = urlsplit(self._client.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return (
            urlunsplit((parts.scheme, netloc, parts.path, "", "")) + f" (shared; {self.namespace})"
        )

    @staticmethod
    def _whole_seconds(left: float) -> int:
        # Litestar's RedisStore answers with TTL, which rounds to the nearest second.
        return int(left + 0.5)

    def _script(self, name: str) -> Any:
        self._client.open()
        return self._client.scripts[name]

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CacheUnavailable(f"Redis is unavailable: {exc}", retry_after=2) from exc

    async def _get(self, key: str, renew: float | None) -> bytes | None:
        if renew is None:
            return cast("bytes | None", await self._call(self._redis.get(key)))
        result = await self._call(self._script("get_renew")(keys=[key], args=[_ms(renew)]))
        return cast("bytes | None", result)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._call(self._redis.set(key, value, px=None if ttl is None else _ms(ttl)))

    async def _set_keep_ttl(self, key: str, value: bytes) -> None:
        await self._call(self._redis.set(key, value, keepttl=True))

    async def _delete(self, key: str) -> None:
        await self._call(self._redis.delete(key))

    async def _delete_prefixes(self, *prefixes: str) -> None:
        redis = self._redis

        async def walk() -> None:
            for prefix in prefixes:
                batch: list[bytes] = []
                match = _GLOB.sub(r"\\\1", prefix) + "*"
                async for key in redis.scan_iter(match=match, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        await redis.unlink(*batch)
                        batch.clear()
                if batch:
                    await redis.unlink(*batch)

        await self._call(walk())

    async def _expiry(self, key: str) -> float | Literal[False] | None:
        ms = int(await self._call(self._redis.pttl(key)))
        if ms == -2:
            return False
        return None if ms < 0 else ms / 1000

    async def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        script = self._script("incr")
        try:
            value = await self._call(
                script(keys=[key], args=[amount, 0 if ttl is None else _ms(ttl)])
            )
        except ResponseError as exc:
            raise ValueError(f"the value at {key!r} is not an integer") from exc
        return int(value)

    async def _add(self, key: str, value: bytes, ttl: float | None) -> bool:
        done = await self._call(
            self._redis.set(key, value, nx=True, px=None if ttl is None else _ms(ttl))
        )
        return bool(done)

    async def _delete_if(self, key: str, value: bytes) -> bool:
        script = self._script("delete_if")
        return bool(await self._call(script(keys=[key], args=[value])))

    async def _renew_if(self, key: str, value: bytes, ttl: float) -> bool:
        script = self._script("renew_if")
        return bool(await self._call(script(keys=[key], args=[value, _ms(ttl)])))

    async def _generations(self, keys: tuple[str, ...]) -> bytes:
        # One MGET; a generation never bumped (or expired) gets a random token first (SET NX).
        redis = self._redis
        tokens = cast("list[bytes | None]", await self._call(redis.mget(keys)))
        if any(token is None for token in tokens):
            for key, token in zip(keys, tokens, strict=True):
                if token is None:
                    await self._add(key, os.urandom(8), GENERATION_TTL)
            tokens = cast("list[bytes | None]", await self._call(redis.mget(keys)))
        return b"".join(token or b"" for token in tokens)

    async def _bump(self, keys: tuple[str, ...]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, os.urandom(8), px=_ms(GENERATION_TTL))
        await self._call(pipe.execute())
