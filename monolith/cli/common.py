"""What every command shares: settings, running async code, output for people and scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from monolith import features as _features  # noqa: F401  (registers the app's jobs and schedules)
from monolith.config import Settings, load_settings
from monolith.db import Database, sqlite_path
from monolith.errors import ConfigError
from monolith.files import DIR_MODE
from monolith.logs import configure_logging
from monolith.services import Services, build_services

T = TypeVar("T")


def settings_from_env(*, service: bool = False, read_only: bool = False) -> Settings:
    """Settings from the environment, checked before anything is written, with logging set
    up: a service (``serve``, ``worker``) logs to stdout like any daemon; other commands log to
    stderr, keeping stdout for their output.

    A read-only command (``read_only``) needs the data dir and the SQLite database to exist
    already, and creates neither: a mistyped ``MONOLITH_DATA_DIR`` is an error, not an empty
    database. Other commands create the data dir (not its parents) and check they can write
    in it. Every problem is a :class:`ConfigError`: one line, exit 1.
    """
    settings = load_settings(write=False)
    check_data_dir(settings, read_only=read_only)
    if not read_only:
        settings = load_settings()  # now the development secret key may be written
    configure_logging(settings.log, sys.stdout if service else sys.stderr)
    return settings


def check_data_dir(settings: Settings, *, read_only: bool, need_database: bool = True) -> None:
    """The data dir (and a SQLite database in it) is usable, or a one-line ConfigError."""
    folder = settings.data_dir
    where = f"MONOLITH_DATA_DIR={folder}"
    sqlite_file = _sqlite_file(settings.database.url)
    if read_only:
        if not folder.is_dir():
            raise ConfigError(
                f"{where}: no such directory; nothing to read there "
                "(a command that writes, such as monolith migrate, creates it)"
            )
        if need_database and sqlite_file is not None and not sqlite_file.is_file():
            raise ConfigError(f"{sqlite_file}: no database there yet (monolith migrate creates it)")
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{where}: exists and is not a directory")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise ConfigError(f"{where}: its parent {folder.parent} does not exist")
        try:
            folder.mkdir(mode=DIR_MODE)  # 0700, as monolith.files makes every data dir
        except OSError as exc:
            raise ConfigError(f"{where}: cannot be created ({exc.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write there ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    if sqlite_file is not None and not sqlite_file.parent.is_dir():
        raise ConfigError(f"MONOLITH_DATABASE_URL: the folder of {sqlite_file} does not exist")


def _sqlite_file(url: str) -> Path | None:
    if not url.lower().startswith("sqlite:"):
        return None
    return Path(sqlite_path(url)).expanduser().absolute()


def check_port(port: int, what: str = "--port") -> int:
    """A TCP port to listen on (1-65535), or a one-line ConfigError."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what} {port}: a port is a number from 1 to 65535")
    return port


def run(coro: Awaitable[T]) -> T:
    async def _main() -> T:
        return await coro

    return asyncio.run(_main())


@asynccontextmanager
async def started_services(settings: Settings) -> AsyncIterator[Services]:
    """The process's services, started (and migrated) for a command, stopped after."""
    svc = build_services(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@asynccontextmanager
async def started_db(settings: Settings, *, create: bool = True) -> AsyncIterator[Database]:
    """Just the database, started (not migrated). With ``create=False`` a SQLite database
    that does not exist yet is an error rather than a new empty file."""
    if not create:
        sqlite_file = _sqlite_file(settings.database.url)
        if sqlite_file is not None and not sqlite_file.is_file():
            raise ConfigError(f"{sqlite_file}: no database there yet (monolith migrate creates it)")
    svc = build_services(settings)
    await svc.db.start()
    try:
        yield svc.db
    finally:
        await svc.db.stop()


async def reachable_database(settings: Settings) -> None:
    """Connect to the database once and leave (raises the one-line error of a bad URL)."""
    async with started_db(settings):
        pass


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON under ``--json``, else as ``human(data)``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        text = human(data)
        if text:
            print(text)


def fail(command: str, reason: str) -> int:
    print(f"monolith {command}: {reason}", file=sys.stderr)
    return 1


class Progress:
    """A one-line progress bar on stderr (only on a terminal; scripts get a final line)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 0), 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            width = 30
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(frac * width)
            sys.stderr.write(
                f"\r{self.label} [{bar:<{width}}] {self.done}/{self.total} ({frac:.0%})"
            )
            sys.stderr.flush()

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            sys.stderr.write("\n")
        sys.stderr.write(f"{self.label}: {self.done}/{self.total} done in {elapsed:.1f}s\n")
