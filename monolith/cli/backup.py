"""``monolith backup`` and ``monolith restore``: verified copies of the database.

The work is done by :mod:`monolith.database.backup`; this module parses, shows progress, reports.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from monolith.cli.common import Progress, add_json_flag, emit, run, settings_from_env, started_db
from monolith.database import backup
from monolith.errors import BackupError


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
        help="put a backup in place in an empty data dir",
        description="Check the backup file, copy it into place as the database of an empty "
        "data dir (never over existing data), and check the copy.",
    )
    p.add_argument("path", type=Path, help="the backup file")
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


def cmd_restore(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    target = backup.database_file(settings.database.url)
    info = backup.restore(args.path, settings.data_dir, target)
    emit(
        args,
        _info(info),
        lambda d: f"restore: {args.path} -> {d['path']} (integrity ok); start the app to use it",
    )
    return 0
