"""``monolith replicate``: Litestream replicating the database, watched for its lag.

Litestream runs as a child process with the configuration written from monolith's settings
and its Prometheus endpoint on a free loopback port. Every half second this process reads the
two WAL positions there and writes the lag to the status file (:mod:`.status`); every minute it
lists the replica's snapshots for the time of the newest. SIGTERM (or SIGINT) stops Litestream
cleanly (it finishes the upload in hand); the exit code is Litestream's. If this process dies
without a word (kill -9), the kernel sends Litestream SIGKILL too (``PR_SET_PDEATHSIG``), so
no orphan goes on replicating a database nobody watches.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from monolith.logs import get_logger
from monolith.replication.base import ReplicationError
from monolith.replication.litestream import Litestream
from monolith.replication.status import (
    LagTracker,
    Position,
    ReplicationStatus,
    positions,
    write_status,
)

log = get_logger("monolith.replicate")

POLL_SECONDS = 0.5
SNAPSHOT_CHECK_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Replicator:
    """One run of Litestream's ``replicate`` for the configured database."""

    def __init__(self, litestream: Litestream, data_dir: Path) -> None:
        self.litestream = litestream
        self.data_dir = data_dir
        self.stop = threading.Event()
        self.tracker = LagTracker()
        self._replicated: Position | None = None
        self._replicated_at: float | None = None
        self._snapshot_at: float | None = None
        self._generation: str | None = None
        self._snapshots_checked = 0.0

    def run(self) -> int:
        port = _free_port()
        started = time.time()
        with self.litestream.config_file(metrics_addr=f"127.0.0.1:{port}") as config:
            proc = subprocess.Popen(
                self.litestream.replicate_argv(config),
                preexec_fn=_die_with_parent,
            )
            log.info(
                "replicating",
                database=str(self.litestream.db_path),
                replica=self.litestream.replica.describe(),
                pid=proc.pid,
            )
            try:
                while proc.poll() is None and not self.stop.is_set():
                    self._tick(port, started)
                    self.stop.wait(POLL_SECONDS)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        code = proc.returncode
        log.info("litestream exited", code=code, stopped=self.stop.is_set())
        return 0 if self.stop.is_set() and code in (0, -signal.SIGTERM) else code or 1

    def _scrape(self, port: int) -> tuple[Position, Position] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        return positions(text, self.litestream.db_path)

    def _tick(self, port: int, started: float) -> None:
        now = time.time()
        seen = self._scrape(port)
        if seen is None:
            # Nothing confirmed yet: count from the start (or the last confirmation).
            lag = now - (self._replicated_at or started)
        else:
            read, replicated = seen
            lag = self.tracker.observe(read, replicated, now)
            if replicated != self._replicated:
                self._replicated, self._replicated_at = replicated, now
        if now - self._snapshots_checked >= SNAPSHOT_CHECK_SECONDS or (
            self._snapshot_at is None and now - self._snapshots_checked >= 5
        ):
            self._snapshots_checked = now
            try:
                snapshots = self.litestream.snapshots()
            except ReplicationError as exc:
                log.warning("cannot list snapshots", error=str(exc))
            else:
                if snapshots:
                    self._snapshot_at = snapshots[-1].created.timestamp()
                    self._generation = snapshots[-1].generation
        write_status(
            self.data_dir,
            ReplicationStatus(
                replica=self.litestream.replica.describe(),
                pid=os.getpid(),
                updated_at=now,
                lag_seconds=round(lag, 3),
                last_replicated_at=self._replicated_at,
                last_snapshot_at=self._snapshot_at,
                generation=self._generation,
            ),
        )
