"""Pub/sub: Litestar's ``ChannelsBackend`` interface, and how a URL picks the backend.

``MONOLITH_CHANNELS_URL``:

- empty (the default): :class:`~monolith.channels.database.DatabaseChannelsBackend` on the
  app's database, so events reach every worker of the box on SQLite, and every box on
  PostgreSQL, with no other service;
- ``redis://…`` / ``rediss://…``: :class:`~monolith.channels.redis.RedisChannelsBackend`;
  ``?namespace=name`` prefixes every channel name with ``name:`` (default ``monolith:``), so
  two deployments or test runs on one Redis never hear each other;
- ``memory://``: Litestar's in-memory backend; one process only, for tests and scripts.

Callers never branch on the backend. Importing this package never imports ``redis``.
"""

from __future__ import annotations

from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend

from monolith.channels.database import DatabaseChannelsBackend
from monolith.database.base import Database
from monolith.errors import ConfigError
from monolith.state import url_namespace

__all__ = ["ChannelsBackend", "MemoryChannels", "open_channels", "scope", "supports_history"]


class MemoryChannels(MemoryChannelsBackend):
    """Litestar's in-memory backend, saying where its messages go (for ``doctor``)."""

    scope = "process"

    def describe(self) -> str:
        return "memory:// (this process only)"


def open_channels(
    url: str, db: Database, *, prefix: str = "monolith:", history: int = 10
) -> ChannelsBackend:
    """The channels backend for ``url`` (see the module docstring); connects to nothing.

    ``prefix`` is the Redis channel-name prefix when the URL names no ``?namespace=``.
    """
    scheme = url.split(":", 1)[0].lower() if url else ""
    if scheme == "":
        return DatabaseChannelsBackend(db, history=history)
    if scheme in ("redis", "rediss", "unix"):
        try:  # redis is an optional dependency (monolith[redis])
            from monolith.channels.redis import RedisChannelsBackend
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("Redis pub/sub needs redis: pip install 'monolith[redis]'") from exc
        url, namespace = url_namespace(url, "")
        return RedisChannelsBackend(url, prefix=f"{namespace}:" if namespace else prefix)
    if scheme == "memory":
        return MemoryChannels(history=history)
    raise ConfigError(
        f"MONOLITH_CHANNELS_URL: unknown scheme {scheme!r}; "
        "leave it empty (pub/sub through the database) or use redis://..."
    )


def supports_history(backend: ChannelsBackend) -> bool:
    """Whether ``backend.get_history`` returns messages (Redis pub/sub keeps none)."""
    return bool(getattr(backend, "supports_history", True))


def scope(backend: ChannelsBackend) -> str:
    """Who hears a published message: ``"process"``, ``"box"`` or ``"shared"`` (for ``doctor``)."""
    return str(getattr(backend, "scope", "process"))
