"""Litestream's configuration, written from monolith's settings, and its commands.

monolith's settings are the one source of truth: every command here writes Litestream's
YAML into a private temporary file from :class:`~monolith.config.ReplicationSettings`, the
database path and the replica, and removes it afterwards. Credentials stay in the
environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), never in the file.

Checkpoints: Litestream must see every WAL frame before SQLite copies it into the database
and restarts the WAL. It holds a read transaction open for that, takes over checkpointing
(PASSIVE past ``min-checkpoint-page-count``, RESTART past ``max-checkpoint-page-count``), and
tolerates the app's own automatic PASSIVE checkpoints (SQLite's default, which the app keeps:
they cannot restart the WAL past Litestream's read lock). The app never runs a RESTART or
TRUNCATE checkpoint, and its backups read inside one transaction, so nothing fights it.

This module runs Litestream as a subprocess and parses its table output; it never opens the
database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monolith.config import ReplicationSettings
from monolith.errors import ConfigError
from monolith.replication.base import ConfigValue, Replica, ReplicationError

#: Longest a listing or a restore may take before it counts as failed.
COMMAND_TIMEOUT = 600.0


def find_litestream(name: str) -> str:
    """The Litestream binary ``MONOLITH_LITESTREAM`` names (a path, or a name on ``PATH``)."""
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"MONOLITH_LITESTREAM: cannot find the litestream binary {name!r}; install it from "
            "its release package (docs/DEPLOY.md) or set MONOLITH_LITESTREAM to its path"
        )
    return found


def duration(seconds: float) -> str:
    """A Go duration (``1s``, ``250ms``, ``24h``) for Litestream's configuration."""
    ms = round(seconds * 1000)
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def _scalar(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def render_config(
    db_path: Path,
    replica: Replica,
    settings: ReplicationSettings,
    *,
    metrics_addr: str | None = None,
) -> str:
    """Litestream's YAML for this database and replica."""
    db: dict[str, ConfigValue] = {
        "path": str(db_path),
        "monitor-interval": duration(settings.sync_seconds),
    }
    fields: dict[str, ConfigValue] = {
        **replica.litestream_fields(),
        "sync-interval": duration(settings.sync_seconds),
        "snapshot-interval": duration(settings.snapshot_hours * 3600),
        "retention": duration(settings.retention_hours * 3600),
    }
    lines = ["# Written by monolith from its MONOLITH_* settings; regenerated on every run."]
    if metrics_addr:
        lines.append(f"addr: {_scalar(metrics_addr)}")
    lines.append("dbs:")
    first = True
    for key, value in db.items():
        lines.append(f"  {'- ' if first else '  '}{key}: {_scalar(value)}")
        first = False
    lines.append("    replicas:")
    first = True
    for key, value in fields.items():
        lines.append(f"      {'- ' if first else '  '}{key}: {_scalar(value)}")
        first = False
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Entry:
    """One snapshot or WAL segment in the replica."""

    generation: str
    index: int
    offset: int
    size: int
    created: datetime


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_table(text: str) -> list[dict[str, str]]:
    """Litestream's listings: a header line, then one whitespace-separated row per entry."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    return [dict(zip(header, row, strict=False)) for row in lines[1:] if len(row) == len(header)]


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, as Litestream's ``-timestamp`` takes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Litestream:
    """Litestream's commands for one database and its replica."""

    def __init__(
        self, binary: str, db_path: Path, replica: Replica, settings: ReplicationSettings
    ) -> None:
        self.binary = binary
        self.db_path = db_path
        self.replica = replica
        self.settings = settings

    @contextmanager
    def config_file(self, *, metrics_addr: str | None = None) -> Iterator[Path]:
        """The configuration in a private temporary file (mode 0600), removed afterwards."""
        text = render_config(self.db_path, self.replica, self.settings, metrics_addr=metrics_addr)
        fd, name = tempfile.mkstemp(prefix="monolith-litestream-", suffix=".yml")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def replicate_argv(self, config: Path) -> list[str]:
        return [self.binary, "replicate", "-config", str(config)]

    def _run(self, command: str, args: Sequence[str] = ()) -> str:
        with self.config_file() as config:
            try:
                done = subprocess.run(
                    [self.binary, command, "-config", str(config), *args, str(self.db_path)],
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ReplicationError(
                    f"litestream {command} took longer than {COMMAND_TIMEOUT:g}s"
                ) from None
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise ReplicationError(
                f"litestream {command} failed against {self.replica.describe()}: "
                + (reason[-1] if reason else f"exit {done.returncode}")
            )
        return done.stdout

    def _entries(self, command: str) -> list[Entry]:
        return [
            Entry(
                generation=row["generation"],
                index=int(row["index"]),
                offset=int(row.get("offset", "0")),
                size=int(row["size"]),
                created=_parse_time(row["created"]),
            )
            for row in parse_table(self._run(command))
        ]

    def snapshots(self) -> list[Entry]:
        """The replica's snapshots, oldest first."""
        return sorted(self._entries("snapshots"), key=lambda e: e.created)

    def wal_segments(self) -> list[Entry]:
        """The replica's WAL segments, oldest first."""
        return sorted(self._entries("wal"), key=lambda e: (e.created, e.index, e.offset))

    def restore(self, output: Path, *, timestamp: datetime | None = None) -> None:
        """Write the database as the replica holds it (or as of ``timestamp``) to ``output``,
        which must not exist.

        Litestream 0.3 finds no backup for a time after a generation's newest change (it looks
        for a generation whose span contains the time); the database as of such a time is the
        whole generation, so that is what is restored then.
        """
        args = ["-o", str(output)]
        try:
            if timestamp is None:
                self._run("restore", args)
                return
            try:
                self._run("restore", [*args, "-timestamp", iso(timestamp)])
            except ReplicationError as exc:
                point = self.restored_point(timestamp)
                if "no matching backups" not in str(exc) or point is None:
                    raise
                self._run("restore", [*args, "-generation", point[0]])
        finally:
            # Litestream restores into OUTPUT.tmp and renames it; its -wal and -shm stay.
            for suffix in (".tmp", ".tmp-wal", ".tmp-shm"):
                Path(f"{output}{suffix}").unlink(missing_ok=True)

    def restored_point(self, timestamp: datetime | None = None) -> tuple[str, datetime] | None:
        """(generation, time) of the newest snapshot or WAL segment a restore up to
        ``timestamp`` replays: the point in time the restored database holds."""
        entries = [
            e
            for e in [*self.snapshots(), *self.wal_segments()]
            if timestamp is None or e.created <= timestamp
        ]
        if not entries:
            return None
        newest = max(entries, key=lambda e: e.created)
        return newest.generation, newest.created
