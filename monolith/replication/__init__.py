"""Continuous replication of the SQLite database off the box, with Litestream.

- :func:`open_replica` reads ``MONOLITH_REPLICA_URL`` into a :class:`Replica` (a directory or
  an S3 prefix); nothing connects.
- :mod:`monolith.replication.litestream` writes Litestream's configuration from monolith's
  settings (one source of truth) and runs its commands: ``replicate``, ``restore``,
  ``snapshots``, ``wal``.
- :mod:`monolith.replication.status` is what ``monolith replicate`` tells the other processes
  (lag, last snapshot), read by ``doctor`` and ``/metrics``.
- :mod:`monolith.replication.standby` keeps a warm standby's copy fresh, and promotes it.

We do not replicate anything ourselves: Litestream streams the WAL, and restores to any point
in time within the retention window.
"""

from __future__ import annotations

from pathlib import Path

from monolith.config import Settings
from monolith.database import sqlite_path
from monolith.errors import ConfigError
from monolith.replication.base import Replica, ReplicationError
from monolith.replication.file import FileReplica
from monolith.replication.litestream import Litestream, find_litestream
from monolith.replication.s3 import S3Replica
from monolith.s3url import parse_s3_url

__all__ = ["Litestream", "Replica", "ReplicationError", "open_litestream", "open_replica"]


def open_replica(url: str) -> Replica | None:
    """The replica ``MONOLITH_REPLICA_URL`` names, or None when it is empty."""
    if not url:
        return None
    if url.startswith("file://"):
        return FileReplica(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        return S3Replica(parse_s3_url(url, "MONOLITH_REPLICA_URL"))
    raise ConfigError(f"MONOLITH_REPLICA_URL: expected file:///path or s3://..., got {url!r}")


def open_litestream(settings: Settings) -> Litestream:
    """Litestream's commands for the configured SQLite database and replica."""
    replica = open_replica(settings.replication.url)
    if replica is None:
        raise ConfigError(
            "MONOLITH_REPLICA_URL is not set: say where the replica lives "
            "(file:///path or s3://BUCKET/PATH?endpoint=URL)"
        )
    if not settings.database.url.lower().startswith("sqlite:"):
        raise ConfigError(
            "replication with Litestream is for the SQLite database; PostgreSQL replicates "
            "with its own tools (streaming replication, WAL archiving)"
        )
    binary = find_litestream(settings.replication.litestream)
    db_path = Path(sqlite_path(settings.database.url)).absolute()
    return Litestream(binary, db_path, replica, settings.replication)
