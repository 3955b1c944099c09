"""Backups of the database, verified, rotated, and restored into an empty data dir.

A backup is one SQLite file taken online (:meth:`monolith.db.Database.backup_to`), written
next to its final name, checked with ``PRAGMA integrity_check`` and only then renamed into
place, so a file named like a backup is a good backup. Restore copies a backup into a data dir
that holds no data yet, checks the copy the same way, and only then gives it the database's
name; it never overwrites a database.

This module must never delete anything but files named like its own backups, and never write
to a live database.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from monolith.database import sqlite_path
from monolith.database.base import BackupProgress, Database
from monolith.database.migrate import available
from monolith.errors import BackupError
from monolith.files import private_dir

#: Backups made by `monolith backup`: monolith-20250101T031500Z.db (UTC), then -1, -2... when
#: several start within one second.
_NAME = re.compile(r"^monolith-(\d{8}T\d{6})Z(?:-(\d+))?\.db$")
#: What a data dir may hold and still count as empty for a restore.
_HARMLESS = frozenset({"secret_key", "backups"})
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A verified backup file."""

    path: Path
    size: int
    schema_version: int
    tables: int


def backup_name(now: float | None = None) -> str:
    """The file name for a backup taken at ``now``."""
    return time.strftime("monolith-%Y%m%dT%H%M%SZ.db", time.gmtime(now))


def _age_key(name: str) -> tuple[str, int] | None:
    """Backups sort oldest first by this; None for a file that is not one of ours."""
    m = _NAME.match(name)
    return None if m is None else (m.group(1), int(m.group(2) or 0))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def verify(path: Path) -> BackupInfo:
    """Check that ``path`` is an intact monolith database; :class:`BackupError` says why not."""
    try:
        with path.open("rb") as f:
            magic = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"{path}: cannot read it: {exc.strerror}") from exc
    if magic != _SQLITE_MAGIC:
        raise BackupError(f"{path}: not a SQLite database")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open it: {exc}") from exc
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"{path}: integrity check failed: {'; '.join(problems[:3])}")
        tables = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
        try:
            version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        except sqlite3.OperationalError:
            raise BackupError(f"{path}: not a monolith database (no schema_migrations)") from None
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: damaged: {exc}") from exc
    finally:
        conn.close()
    return BackupInfo(path, path.stat().st_size, int(version or 0), int(tables[0]))


def _target(to: Path | None, backup_dir: Path) -> Path:
    """Where a new backup goes: ``to`` as a file, into ``to`` as a directory, or the backup dir."""
    if to is not None and not to.is_dir():
        if to.exists():
            raise BackupError(f"{to} already exists; backups never overwrite a file")
        private_dir(to.parent)
        return to
    folder = to if to is not None else backup_dir
    private_dir(folder)
    name = backup_name()
    path, n = folder / name, 0
    while path.exists():  # several backups within one second
        n += 1
        path = folder / name.replace(".db", f"-{n}.db")
    return path


@dataclass(slots=True)
class _Stage:
    path: Path
    info: BackupInfo | None = None


@contextmanager
def _staged(final: Path) -> Iterator[_Stage]:
    """A hidden file next to ``final`` to write; on success it is checked, made durable and
    renamed to ``final`` (``stage.info`` then describes it), so ``final`` is never half a file
    or a bad one."""
    stage = _Stage(final.with_name(f".{final.name}.partial"))
    stage.path.unlink(missing_ok=True)
    try:
        yield stage
        info = verify(stage.path)
        _fsync_file(stage.path)
        stage.path.rename(final)
        _fsync_dir(final.parent)
        stage.info = replace(info, path=final)
    finally:
        stage.path.unlink(missing_ok=True)


async def create_backup(
    db: Database,
    backup_dir: Path,
    *,
    to: Path | None = None,
    progress: BackupProgress | None = None,
) -> BackupInfo:
    """Back ``db`` up into ``to`` (a file or folder) or ``backup_dir``; returns the checked file."""
    target = _target(to, backup_dir)
    with _staged(target) as stage:
        await db.backup_to(stage.path, progress)
    assert stage.info is not None
    return stage.info


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups in ``folder``; returns what was deleted."""
    if keep < 1:
        raise BackupError(f"--keep must be at least 1, got {keep}")
    ours = [(key, p) for p in folder.iterdir() if p.is_file() and (key := _age_key(p.name))]
    doomed = [path for _, path in sorted(ours)[:-keep]]
    for path in doomed:
        path.unlink()
    return doomed


def database_file(url: str) -> Path:
    """The SQLite file a database URL names; other databases restore with their own tools."""
    if not url.lower().startswith("sqlite:"):
        raise BackupError(
            "restore puts back SQLite backups; PostgreSQL restores a pg_dump archive with "
            'pg_restore --dbname="$MONOLITH_DATABASE_URL" monolith.dump'
        )
    return Path(sqlite_path(url))


def _in_the_way(data_dir: Path, db_path: Path) -> list[str]:
    """What stops a restore: the database (or its journal files), or any data in ``data_dir``."""
    found = [
        str(p) for p in (db_path, *(Path(f"{db_path}{s}") for s in ("-wal", "-shm"))) if p.exists()
    ]
    if data_dir.is_dir():
        found += sorted(
            str(entry)
            for entry in data_dir.iterdir()
            if entry.name not in _HARMLESS and str(entry) not in found
        )
    return found


def _check_schema(info: BackupInfo, source: object) -> None:
    newest = max((m.version for m in available()), default=0)
    if info.schema_version > newest:
        raise BackupError(
            f"{source}: made by a newer monolith (schema {info.schema_version}, "
            f"this one knows up to {newest}); upgrade first"
        )


def self_contained(path: Path) -> None:
    """Leave the database at ``path`` in rollback-journal mode: one file, with no ``-wal`` or
    ``-shm`` beside it to lose in a rename (the app switches it back to WAL when it opens it)."""
    try:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode = DELETE").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: damaged: {exc}") from exc


def place(
    data_dir: Path, db_path: Path, write: Callable[[Path], object], source: object
) -> BackupInfo:
    """Make ``db_path`` in an empty ``data_dir`` from ``write(path)``, which fills a file that
    does not exist yet; the result is checked before it takes the database's name. ``source``
    names where it came from in error messages."""
    in_the_way = _in_the_way(data_dir, db_path)
    if in_the_way:
        shown = ", ".join(in_the_way[:3]) + (" ..." if len(in_the_way) > 3 else "")
        raise BackupError(f"restore goes into an empty data dir only; {data_dir} holds {shown}")
    private_dir(db_path.parent)
    with _staged(db_path) as stage:
        write(stage.path)
        self_contained(stage.path)
        _check_schema(verify(stage.path), source)
    assert stage.info is not None
    return stage.info


def restore(source: Path, data_dir: Path, db_path: Path) -> BackupInfo:
    """Put the backup ``source`` in place as the database ``db_path`` of an empty ``data_dir``."""
    _check_schema(verify(source), source)  # fail fast, before copying gigabytes of a bad file
    # What lands is checked again after the copy.
    return place(data_dir, db_path, lambda path: shutil.copyfile(source, path), source)
