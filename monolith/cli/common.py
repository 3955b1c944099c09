"""What every command shares: settings, running async code, output for people and scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from monolith import features as _features  # noqa: F401  (registers the app's jobs and schedules)
from monolith.config import Settings, load_settings
from monolith.db import Database
from monolith.logs import configure_logging
from monolith.services import Services, build_services

T = TypeVar("T")


def settings_from_env(*, service: bool = False) -> Settings:
    """Settings from the environment, with logging set up: a service (``serve``, ``worker``)
    logs to stdout like any daemon; other commands log to stderr, keeping stdout for their
    output."""
    settings = load_settings()
    configure_logging(settings.log, sys.stdout if service else sys.stderr)
    return settings


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
async def started_db(settings: Settings) -> AsyncIterator[Database]:
    """Just the database, started (not migrated)."""
    svc = build_services(settings)
    await svc.db.start()
    try:
        yield svc.db
    finally:
        await svc.db.stop()


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
