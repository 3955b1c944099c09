"""How far the replica is behind, as ``monolith replicate`` measures it for everyone else.

``monolith replicate`` asks its Litestream for two positions every half second (Litestream's
own Prometheus endpoint, bound to loopback): how far it has read the database's WAL (its
shadow WAL) and how far the replica holds it. :class:`LagTracker` remembers when each read
position was first seen; the **lag** is the age of the oldest change Litestream has read but
the replica does not hold yet, 0 when the replica holds everything. It writes the figures to
``$DATA_DIR/replication.json`` (atomically), where ``doctor`` and ``/metrics`` read them.

A status file that stops being updated means ``monolith replicate`` is not running: readers
then count its age into the lag (:func:`current_lag`), so the lag alert fires for a dead
replicator as it does for a slow one.

This module never touches the database or the replica.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: Where ``monolith replicate`` writes its figures, in the data dir.
STATUS_FILE = "replication.json"
#: A status not updated for this long comes from a replicator that is gone.
STALE_SECONDS = 10.0

#: (WAL index, byte offset): comparable, later positions are larger.
Position = tuple[int, int]


class LagTracker:
    """The age of the oldest change read from the database but not yet in the replica."""

    def __init__(self) -> None:
        #: Read positions not yet replicated, oldest first, with when each was first seen.
        self._pending: list[tuple[Position, float]] = []

    def observe(self, read: Position, replicated: Position, now: float) -> float:
        """Record the positions seen at ``now``; return the lag in seconds."""
        if self._pending and read < self._pending[-1][0]:
            self._pending.clear()  # a new generation starts over from position 0
        if read > replicated and (not self._pending or read > self._pending[-1][0]):
            self._pending.append((read, now))
        self._pending = [(pos, seen) for pos, seen in self._pending if pos > replicated]
        return now - self._pending[0][1] if self._pending else 0.0


@dataclass(frozen=True, slots=True)
class ReplicationStatus:
    """What ``monolith replicate`` last knew."""

    replica: str
    pid: int
    updated_at: float
    lag_seconds: float
    #: When the replica's position last moved (a change reached it); None: not yet.
    last_replicated_at: float | None = None
    #: When the newest snapshot in the replica was taken; None: none yet.
    last_snapshot_at: float | None = None
    generation: str | None = None


def write_status(data_dir: Path, status: ReplicationStatus) -> None:
    """Replace the status file in one rename: readers see the old figures or the new."""
    path = data_dir / STATUS_FILE
    stage = path.with_name(f".{STATUS_FILE}.{os.getpid()}")
    stage.write_text(json.dumps(asdict(status)))
    stage.replace(path)


def read_status(data_dir: Path) -> ReplicationStatus | None:
    """The last figures ``monolith replicate`` wrote, or None (never ran, or unreadable)."""
    try:
        raw = json.loads((data_dir / STATUS_FILE).read_text())
        return ReplicationStatus(**raw)
    except (OSError, ValueError, TypeError):
        return None


def running(status: ReplicationStatus, now: float | None = None) -> bool:
    """Whether the replicator that wrote ``status`` is still updating it."""
    return (now if now is not None else time.time()) - status.updated_at <= STALE_SECONDS


def current_lag(status: ReplicationStatus, now: float | None = None) -> float:
    """The lag now: the last measured one, plus the status's age once the replicator is gone."""
    now = now if now is not None else time.time()
    if running(status, now):
        return status.lag_seconds
    return status.lag_seconds + (now - status.updated_at)


def positions(metrics_text: str, db_path: Path) -> tuple[Position, Position] | None:
    """(read, replicated) positions of ``db_path`` from Litestream's Prometheus text, or None
    when it has not reported them yet."""
    wanted = {
        "litestream_shadow_wal_index": "read_index",
        "litestream_shadow_wal_size": "read_offset",
        "litestream_replica_wal_index": "replica_index",
        "litestream_replica_wal_offset": "replica_offset",
    }
    label = f'db="{db_path}"'
    found: dict[str, int] = {}
    for line in metrics_text.splitlines():
        name, _, rest = line.partition("{")
        if name in wanted and label in rest:
            found[wanted[name]] = int(float(rest.rsplit(" ", 1)[1]))
    if len(found) < len(wanted):
        return None
    return (
        (found["read_index"], found["read_offset"]),
        (found["replica_index"], found["replica_offset"]),
    )
