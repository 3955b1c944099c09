"""Pub/sub: Litestar's ``ChannelsBackend`` interface, and how a URL picks the backend.

``MONOLITH_CHANNELS_URL``:

- empty (the default): pub/sub through the app's database, so events reach every worker of
  the box on SQLite (:class:`~monolith.channels.database.DatabaseChannelsBackend`, a change
  counter in shared memory saying when to read), and every box on PostgreSQL
  (:class:`~monolith.channels.postgres.PostgresChannelsBackend`, woken by LISTEN/NOTIFY), with
  no other service;
- ``redis://…`` / ``rediss://…``: :class:`~monolith.channels.redis.RedisChannelsBackend`;
  ``?namespace=name`` prefixes every channel name with ``name:`` (default ``monolith:``), so
  two deployments or test runs on one Redis never hear each other;
- ``memory://``: Litestar's in-memory backend; one process only, for tests and scripts.

Every backend numbers its messages and keeps them ``keep`` seconds (``MONOLITH_EVENTS_KEEP``)
for :meth:`replay` (``Last-Event-ID``): see :mod:`monolith.channels.message`.

Callers never branch on the backend. Importing this package never imports ``redis`` or
``asyncpg``.
"""

from __future__ import annotations

from pathlib import Path

from litestar.channels.backends.base import ChannelsBackend

from monolith.channels.database import DatabaseChannelsBackend
from monolith.channels.memory import MemoryChannels
from monolith.channels.message import Message, Replay
from monolith.channels.signal import ChangeSignal
from monolith.database.base import Database
from monolith.errors import ConfigError
from monolith.state import url_namespace

__all__ = [
    "ChannelsBackend",
    "MemoryChannels",
    "Message",
    "Replay",
    "namespace",
    "open_channels",
    "scope",
    "supports_history",
]


def open_channels(
    url: str,
    db: Database,
    *,
    prefix: str = "monolith:",
    history: int = 10,
    keep: float = 600.0,
) -> ChannelsBackend:
    """The channels backend for ``url`` (see the module docstring); connects to nothing.

    ``prefix`` is the Redis channel-name prefix when the URL names no ``?namespace=``;
    ``keep`` is how many seconds messages are kept for a replay.
    """
    scheme = url.split(":", 1)[0].lower() if url else ""
    if scheme == "" and db.dialect == "postgresql":
        try:  # asyncpg is an optional dependency (monolith[postgres])
            from monolith.channels.postgres import PostgresChannelsBackend
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("pub/sub on PostgreSQL needs asyncpg") from exc
        # LISTEN needs a session of its own: the direct URL when the pool goes through
        # PgBouncer in transaction mode (MONOLITH_DB_DIRECT_URL), else the database's URL.
        listen_url = getattr(db, "direct_url", None) or getattr(db, "url", "")
        return PostgresChannelsBackend(db, str(listen_url), history=history, retention=keep)
    if scheme == "":
        path = getattr(db, "path", None)
        signal = ChangeSignal(Path(f"{path}-events")) if path is not None else None
        return DatabaseChannelsBackend(db, history=history, retention=keep, signal=signal)
    if scheme in ("redis", "rediss", "unix"):
        try:  # redis is an optional dependency (monolith[redis])
            from monolith.channels.redis import RedisChannelsBackend
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("Redis pub/sub needs redis: pip install 'monolith[redis]'") from exc
        url, name = url_namespace(url, "")
        return RedisChannelsBackend(url, prefix=f"{name}:" if name else prefix, keep=keep)
    if scheme == "memory":
        return MemoryChannels(history=history, keep=keep)
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


def namespace(backend: object) -> str:
    """Where the backend's channel names live, for ``doctor`` (a Redis prefix, a database)."""
    prefix = getattr(backend, "prefix", None)
    if prefix:
        return f"channel names under {prefix!r}"
    return "the database's own tables (one namespace per database)"
