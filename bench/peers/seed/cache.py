"""The seed article's Redis cache wrapper, as printed ("A simple Redis cache wrapper").

Only the connection URL and the key prefix come from settings; the logic is the article's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis.asyncio as redis

from bench.peers.seed.settings import PREFIX, REDIS_URL

cache = redis.from_url(REDIS_URL)


def cached(prefix: str, ttl: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    prefix = f"{PREFIX}:{prefix}"

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = (
                f"{prefix}:"
                + ":".join(map(str, args))
                + ":"
                + ":".join(f"{k}={v}" for k, v in kwargs.items())
            )
            hit = await cache.get(key)
            if hit is not None:
                return json.loads(hit)
            value = await fn(*args, **kwargs)
            await cache.set(key, json.dumps(value), ex=ttl)
            return value

        return wrapper

    return decorator


def key_for(prefix: str, *args: Any) -> str:
    """The key :func:`cached` uses for positional ``args``, for explicit invalidation."""
    return f"{PREFIX}:{prefix}:" + ":".join(map(str, args)) + ":"
