"""A warm standby: a copy of the database restored from the replica, kept fresh, promoted on
failover.

``monolith standby`` runs on a second box. It restores the replica into a staging file next to
the database, checks it (``PRAGMA integrity_check``, a monolith schema), and puts it in place,
then starts over after a pause. The first copy is renamed into place; later ones are written
into the live database with SQLite's backup API, in one write transaction, so the app serving
reads from it sees the old copy or the new one, never half of each (its readers are never
blocked: WAL). Litestream 0.3 restores whole databases (snapshot plus WAL), so one round costs
about one restore: the copy's age is bounded by the time of one round plus the pause.

``$DATA_DIR/standby.json`` marks the data dir as a standby's and holds the figures: when the
restore that made the current copy started (the copy holds everything the replica held then).
The app reads the mark at start and serves reads only; ``/health/ready`` reports the age.
``promote`` catches up one last time and removes the mark: the next start is a primary's.

This module never writes to a database that is not a standby copy: a data dir holding a
database without the mark is refused (it may be a primary's).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from monolith.config import STANDBY_FILE
from monolith.database.backup import self_contained, verify
from monolith.errors import BackupError, StateUnavailable
from monolith.logs import get_logger
from monolith.replication.base import ReplicationError
from monolith.replication.litestream import Litestream

log = get_logger("monolith.standby")

#: Seconds between two rounds of restoring.
PAUSE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class StandbyStatus:
    replica: str
    #: When the figures were last written.
    updated_at: float
    #: When the restore that made the current copy started; None: no copy yet.
    restored_at: float | None = None
    #: How long that round took (restore, check and copy).
    round_seconds: float | None = None
    rounds: int = 0
    last_error: str | None = None


def read_standby(data_dir: Path) -> StandbyStatus | None:
    """The standby's figures, or None when the data dir is not a standby's."""
    try:
        return StandbyStatus(**json.loads((data_dir / STANDBY_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        # Marked, but unreadable (a crash mid-write cannot do this: the write is a rename).
        return StandbyStatus(replica="?", updated_at=0.0, last_error="standby.json unreadable")


def write_standby(data_dir: Path, status: StandbyStatus) -> None:
    path = data_dir / STANDBY_FILE
    stage = path.with_name(f".{STANDBY_FILE}.partial")
    stage.write_text(json.dumps(asdict(status)))
    stage.replace(path)


def behind(status: StandbyStatus, now: float | None = None) -> float | None:
    """Seconds the copy may be behind the replica (since its restore began); None: no copy."""
    if status.restored_at is None:
        return None
    return (now if now is not None else time.time()) - status.restored_at


def copy_into(source: Path, target: Path) -> None:
    """Write ``source`` over the live database ``target`` in one transaction (backup API)."""
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


class Standby:
    """Keeps the copy in ``db_path`` fresh from the replica."""

    def __init__(self, litestream: Litestream, data_dir: Path) -> None:
        self.litestream = litestream
        self.data_dir = data_dir
        self.db_path = litestream.db_path
        self.stop = threading.Event()
        self.status = read_standby(data_dir) or StandbyStatus(
            replica=litestream.replica.describe(), updated_at=time.time()
        )

    def claim(self) -> None:
        """Mark the data dir as a standby's, refusing one that holds another database."""
        if read_standby(self.data_dir) is None and self.db_path.exists():
            raise ReplicationError(
                f"{self.db_path} exists and {self.data_dir} is not a standby's data dir: a "
                "standby starts from an empty data dir (is this box the primary?)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_standby(self.data_dir, self.status)

    def refresh(self) -> StandbyStatus:
        """One round: restore, check, put in place. Raises on failure (the copy stays)."""
        started = time.time()
        stage = self.data_dir / f".{self.db_path.name}.standby"
        for leftover in (stage, Path(f"{stage}.tmp"), Path(f"{stage}-wal"), Path(f"{stage}-shm")):
            leftover.unlink(missing_ok=True)
        try:
            self.litestream.restore(stage)
            try:
                self_contained(stage)
                verify(stage)
            except BackupError as exc:
                raise ReplicationError(f"the restored copy is not usable: {exc}") from exc
            if self.db_path.exists():
                copy_into(stage, self.db_path)
            else:
                stage.rename(self.db_path)
        finally:
            stage.unlink(missing_ok=True)
        self.status = StandbyStatus(
            replica=self.status.replica,
            updated_at=time.time(),
            restored_at=started,
            round_seconds=round(time.time() - started, 3),
            rounds=self.status.rounds + 1,
        )
        write_standby(self.data_dir, self.status)
        return self.status

    def run(self) -> None:
        """Rounds until :attr:`stop` is set; a failed round is logged and retried."""
        while not self.stop.is_set():
            try:
                status = self.refresh()
            except (ReplicationError, sqlite3.Error, OSError) as exc:
                log.warning("standby round failed; the copy stays as it was", error=str(exc))
                self.status = StandbyStatus(
                    **{**asdict(self.status), "updated_at": time.time(), "last_error": str(exc)}
                )
                write_standby(self.data_dir, self.status)
            else:
                log.debug("standby copy refreshed", seconds=status.round_seconds)
            self.stop.wait(PAUSE_SECONDS)


def promote(standby: Standby, *, catch_up: bool = True) -> StandbyStatus:
    """Make the standby's copy the primary's database: one last round from the replica (unless
    ``catch_up`` is False: the replica is gone and the copy is what there is), then the mark
    goes. Start the app (and ``monolith replicate``) afterwards."""
    if read_standby(standby.data_dir) is None:
        raise ReplicationError(
            f"{standby.data_dir} is not a standby's data dir; nothing to promote"
        )
    status = standby.refresh() if catch_up else standby.status
    if status.restored_at is None:
        raise ReplicationError("the standby has no copy yet; nothing to promote")
    (standby.data_dir / STANDBY_FILE).unlink()
    return status


class StandbyMode:
    """The app's view of a standby data dir: how far behind its copy is, and whether that is
    within ``MONOLITH_STANDBY_MAX_LAG_SECONDS`` (a readiness check)."""

    scope = "box"

    def __init__(self, data_dir: Path, max_lag_seconds: float) -> None:
        self.data_dir = data_dir
        self.max_lag_seconds = max_lag_seconds

    def describe(self) -> str:
        return f"standby copy in {self.data_dir} (read-only; monolith promote makes it primary)"

    def state(self) -> dict[str, object]:
        """For ``/health/ready``: the copy's age and bound."""
        status = read_standby(self.data_dir)
        late = behind(status) if status is not None else None
        return {
            "behind_seconds": None if late is None else round(late, 3),
            "max_lag_seconds": self.max_lag_seconds,
            "rounds": status.rounds if status is not None else 0,
            "last_error": status.last_error if status is not None else None,
        }

    async def check(self) -> None:
        """Raise unless the copy is no older than the bound."""
        status = read_standby(self.data_dir)
        late = behind(status) if status is not None else None
        if late is None:
            raise StateUnavailable("standby: no copy restored yet (is monolith standby running?)")
        if late > self.max_lag_seconds:
            raise StateUnavailable(
                f"standby: the copy is {late:.1f}s behind the replica, past the "
                f"{self.max_lag_seconds:g}s bound"
            )
