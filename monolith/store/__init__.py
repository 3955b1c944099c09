"""Shared key/value state: the :class:`Store` interface and :func:`open_store`, the one factory.

``MONOLITH_STORE_URL`` picks the backend: ``disk://path`` (default; shared by the processes of
one box), ``redis://host:port/db`` (shared by boxes), ``memory://`` (one process; tests).
Callers never branch on the backend. Importing this package never imports ``redis``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monolith.errors import ConfigError
from monolith.state import Scope, url_namespace
from monolith.store.base import TTL, Store, StoreStats
from monolith.store.disk import DiskStore
from monolith.store.memory import MemoryStore

__all__ = ["TTL", "Scope", "Store", "StoreStats", "open_store"]


def open_store(url: str, *, namespace: str = "monolith", **options: Any) -> Store:
    """A store for ``url``; it opens itself on first use (``start`` opens it eagerly).

    ``disk://var/cache`` is relative to the working directory, ``disk:///srv/cache`` absolute;
    ``redis://host:6379/0?namespace=shop`` prefixes every key with ``shop:`` (default
    ``monolith``), as Litestar's ``RedisStore(namespace="shop")`` does.
    Options are backend settings (``size_limit_mb``, ``timeout`` for disk; ``timeout``,
    ``connect_timeout`` for Redis); ones a backend does not take are ignored.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(
            f"MONOLITH_STORE_URL: expected disk://path, redis://... or memory://, got {url!r}"
        )
    if scheme == "memory":
        return MemoryStore(namespace)
    if scheme == "disk":
        if not rest:
            raise ConfigError(
                "MONOLITH_STORE_URL: disk:// needs a directory, e.g. disk://var/cache"
            )
        return DiskStore(
            Path(rest), namespace=namespace, **_only(options, "size_limit_mb", "timeout")
        )
    if scheme in ("redis", "rediss", "unix"):
        # redis is an optional dependency (monolith[redis]): imported only when named.
        from monolith.store.redis import RedisStore

        url, namespace = url_namespace(url, namespace)
        return RedisStore(url, namespace=namespace, **_only(options, "timeout", "connect_timeout"))
    raise ConfigError(
        f"MONOLITH_STORE_URL: unknown scheme {scheme!r}; use disk://path, redis://host:port/0 or memory://"
    )


def _only(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in names and v is not None}
