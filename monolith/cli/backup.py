"""``monolith backup`` and ``monolith restore``: verified copies of the database.

The work is done by :mod:`monolith.database.backup`; this module parses, shows progress, reports.
"""

from __future__ import annotations

import argparse
import threading
from datetime import UTC, datetime
from pathlib import Path

from monolith.cli.common import Progress, add_json_flag, emit, run, settings_from_env, started_db
from monolith.config import Settings
from monolith.database import backup
from monolith.errors import BackupError
from monolith.replication import open_litestream


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backup",
        help="take an online, verified backup of the database",
        description="Copy one consistent snapshot of the database while the app keeps "
        "writing, check it with PRAGMA integrity_check, and keep it in the data dir's "
        "backups/ folder (or --to). On PostgreSQL, use pg_dump instead.",
    )
    p.add_argument("--to", type=Path, help="a file to write, or a folder to write into")
    p.add_argument(
        "--keep", type=int, metavar="N", help="then delete all but the newest N backups there"
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="put a backup, or the replica, in place in an empty data dir",
        description="Check the backup file, copy it into place as the database of an empty "
        "data dir (never over existing data), and check the copy. With --from-replica, "
        "restore from MONOLITH_REPLICA_URL with Litestream instead: everything the replica "
        "holds, or its state as of --timestamp; it says which point in time it restored.",
    )
    p.add_argument("path", type=Path, nargs="?", help="the backup file")
    p.add_argument("--from-replica", action="store_true", help="restore from MONOLITH_REPLICA_URL")
    p.add_argument(
        "--timestamp",
        type=_timestamp,
        metavar="T",
        help="with --from-replica: the database as of T (ISO 8601, e.g. 2026-01-31T12:00:00Z; "
        "UTC unless it names a zone)",
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_restore)


class _PageProgress:
    """Adapts the backup's ``(done, total)`` calls (from the copying thread) to a bar."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self.lock:
            if self.bar is None:
                self.bar = Progress("backup: pages copied", total)
            self.bar.advance(done - self.bar.done)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.finish()


def _info(info: backup.BackupInfo) -> dict[str, object]:
    return {
        "path": str(info.path),
        "bytes": info.size,
        "schema_version": info.schema_version,
        "integrity": "ok",
    }


def cmd_backup(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    if args.keep is not None and args.keep < 1:
        raise BackupError(f"--keep must be at least 1, got {args.keep}")
    progress = _PageProgress()

    async def go() -> backup.BackupInfo:
        async with started_db(settings) as db:
            return await backup.create_backup(
                db, settings.backup_dir, to=args.to, progress=progress
            )

    info = run(go())
    progress.finish()
    removed = backup.prune(info.path.parent, args.keep) if args.keep else []
    emit(
        args,
        {**_info(info), "removed": [str(p) for p in removed]},
        lambda d: (
            f"backup: {d['path']} ({d['bytes'] / 1e6:.1f} MB, integrity ok)"
            + "".join(f"\nbackup: removed old {p}" for p in d["removed"])
        ),
    )
    return 0


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO 8601 like 2026-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_restore(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    target = backup.database_file(settings.database.url)
    if args.from_replica:
        if args.path is not None:
            raise BackupError("give a backup file or --from-replica, not both")
        return _restore_from_replica(args, settings, target)
    if args.timestamp is not None:
        raise BackupError("--timestamp goes with --from-replica")
    if args.path is None:
        raise BackupError("which backup? give its path (or --from-replica)")
    info = backup.restore(args.path, settings.data_dir, target)
    emit(
        args,
        _info(info),
        lambda d: f"restore: {args.path} -> {d['path']} (integrity ok); start the app to use it",
    )
    return 0


def _restore_from_replica(args: argparse.Namespace, settings: Settings, target: Path) -> int:
    litestream = open_litestream(settings)
    moment: datetime | None = args.timestamp
    point = litestream.restored_point(moment)
    if point is None:
        when = f" at or before {moment.isoformat()}" if moment else ""
        raise BackupError(f"{litestream.replica.describe()} holds no backup{when}")
    info = backup.place(
        settings.data_dir,
        target,
        lambda path: litestream.restore(path, timestamp=moment),
        litestream.replica.describe(),
    )
    generation, created = point
    emit(
        args,
        {
            **_info(info),
            "replica": litestream.replica.describe(),
            "generation": generation,
            "point_in_time": created.isoformat(),
            "requested": moment.isoformat() if moment else None,
        },
        lambda d: (
            f"restore: {d['replica']} -> {d['path']} (integrity ok); it holds the database as "
            f"of {d['point_in_time']} (generation {d['generation']}"
            + (f", the newest point at or before {d['requested']}" if d["requested"] else "")
            + "); start the app to use it"
        ),
    )
    return 0
