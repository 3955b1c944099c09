"""Store on Redis: the same keys and semantics shared by every process on every box.

Each operation is one command (``GET``, ``SET ... PX``, ``SET ... NX PX``, ``PTTL``) or one
Lua script where two steps must be one (``incr`` creating a TTL only for a new key, ``get``
that renews), so ``incr`` and ``add`` are atomic across processes and boxes. ``delete_all``
walks the namespace with ``SCAN`` (it never blocks Redis the way ``KEYS`` or a scanning
script would) and is meant for rare bulk invalidations, not request paths.

A Redis that is down or slow is :class:`~monolith.errors.CacheUnavailable` (HTTP 503 with
Retry-After) within a couple of seconds, never a hang: short socket timeouts, one retry on a
fresh connection (which is what makes the first command after a Redis restart succeed), and
the pool reconnects by itself when Redis is back.

This module is imported only when a ``redis://`` URL is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

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

from monolith.errors import CacheUnavailable, NotStarted
from monolith.state import Scope
from monolith.store.base import Store

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _Client:
    """The connection pool every namespace view shares; opened by ``start``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis: aioredis.Redis | None = None
        self.incr: Any = None
        self.get_renew: Any = None


class RedisStore(Store):
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
        self._client = _Client(url)
        self._timeouts = (connect_timeout, timeout)

    async def start(self) -> None:
        client = self._client
        if client.redis is not None:
            return
        client.redis = aioredis.Redis.from_url(
            client.url,
            decode_responses=False,
            socket_connect_timeout=self._timeouts[0],
            socket_timeout=self._timeouts[1],
            retry=Retry(NoBackoff(), 1),
        )
        client.incr = client.redis.register_script(_INCR)
        client.get_renew = client.redis.register_script(_GET_RENEW)

    async def stop(self) -> None:
        client = self._client
        if client.redis is not None:
            redis, client.redis = client.redis, None
            await redis.aclose()

    async def ping(self) -> None:
        await self._call(self._redis().ping())

    async def retention_risks(self) -> list[str]:
        redis = self._redis()
        try:
            config: dict[bytes | str, bytes | str] = {}
            for name in ("save", "appendonly", "maxmemory", "maxmemory-policy"):
                config.update(await self._call(redis.config_get(name)))
        except ResponseError as exc:  # CONFIG refused (a managed Redis): say what is unknown
            return [
                f"Redis does not show its configuration ({exc}); check that it persists "
                "sessions and never evicts them"
            ]
        value = {_text(k): _text(v) for k, v in config.items()}
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

    def _redis(self) -> aioredis.Redis:
        if self._client.redis is None:
            raise NotStarted("the store was used before start(); the app lifespan starts it")
        return self._client.redis

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CacheUnavailable(f"Redis is unavailable: {exc}", retry_after=2) from exc

    async def _get(self, key: str, renew: float | None) -> bytes | None:
        if renew is None:
            return cast("bytes | None", await self._call(self._redis().get(key)))
        self._redis()
        result = await self._call(self._client.get_renew(keys=[key], args=[_ms(renew)]))
        return cast("bytes | None", result)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._call(self._redis().set(key, value, px=None if ttl is None else _ms(ttl)))

    async def _delete(self, key: str) -> None:
        await self._call(self._redis().delete(key))

    async def _delete_prefixes(self, *prefixes: str) -> None:
        redis = self._redis()

        async def walk() -> None:
            for prefix in prefixes:
                batch: list[bytes] = []
                # Namespace segments are [A-Za-z0-9_.-], so the prefix needs no glob escaping.
                async for key in redis.scan_iter(match=prefix + "*", count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        await redis.unlink(*batch)
                        batch.clear()
                if batch:
                    await redis.unlink(*batch)

        await self._call(walk())

    async def _expiry(self, key: str) -> float | Literal[False] | None:
        ms = int(await self._call(self._redis().pttl(key)))
        if ms == -2:
            return False
        return None if ms < 0 else ms / 1000

    async def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        self._redis()
        try:
            value = await self._call(
                self._client.incr(keys=[key], args=[amount, 0 if ttl is None else _ms(ttl)])
            )
        except ResponseError as exc:
            raise ValueError(f"the value at {key!r} is not an integer") from exc
        return int(value)

    async def _add(self, key: str, value: bytes, ttl: float | None) -> bool:
        done = await self._call(
            self._redis().set(key, value, nx=True, px=None if ttl is None else _ms(ttl))
        )
        return bool(done)
