"""The observability component of a process: metrics, statement statistics, loop monitor.

Started by the lifespan after the database (it installs the database's statement observer)
and stopped before it (the last statement numbers are flushed on the way out). One
background task per process does the periodic work: process gauges every few seconds, the
statement flush every ``flush_seconds``, the dashboard sample every ``SAMPLE_SECONDS``.

Scrape-time numbers that live outside the process (queue depth, cache size) come from
``sources``: async callables other components register, asked once per scrape or sample.
This component must never make a request fail: its errors are logged and retried later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import psutil
from prometheus_client.metrics_core import Metric

from monolith.config import Settings
from monolith.database.base import Database
from monolith.logs import get_logger
from monolith.observability import history
from monolith.observability.loopmon import LoopMonitor
from monolith.observability.metrics import Metrics, multiprocess_dir
from monolith.observability.statements import (
    Order,
    Statement,
    StatementStats,
    pg_stat_statements,
)
from monolith.observability.statsfile import StatsFile

#: An async callable giving metric families measured at scrape time (queue depth, cache size).
Source = Callable[[], Awaitable[Iterable[Metric]]]

PROCESS_SECONDS = 5.0

log = get_logger("monolith.observability")


class Observability:
    #: For ``doctor``: the numbers live in files every process of this box adds to (``serve``
    #: and ``worker`` always turn multi-process mode on), and each box is scraped on its own.
    scope: ClassVar[str] = "box"

    def __init__(self, settings: Settings, db: Database, metrics: Metrics) -> None:
        obs = settings.observability
        self._serve_dir = settings.serve_metrics_dir
        self.db = db
        self.metrics = metrics
        self.flush_seconds = obs.flush_seconds
        self.statements = StatementStats(metrics, slow_seconds=obs.slow_statement_ms / 1000)
        self.stats_file = StatsFile(settings.stats_path)
        self.monitor = LoopMonitor(
            block_after=obs.loop_block_ms / 1000,
            on_lag=metrics.loop_lag.set,
            on_block=lambda route: metrics.loop_blocks.labels(route).inc(),
        )
        self.sources: list[Source] = []
        #: Whether this process offers dashboard samples: only HTTP workers see the HTTP
        #: numbers (the app turns it on; CLI commands and `monolith worker` leave it off).
        self.sampling = False
        #: Whether to watch the event loop (lag gauge, block warnings): in processes that
        #: serve or run jobs. A one-shot command's loop blocks no one, and its warnings would
        #: land in the output a script reads.
        self.watch_loop = False
        self._task: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self._cpu = 0.0
        self._flush_lock = asyncio.Lock()

    def describe(self) -> str:
        directory = multiprocess_dir() or str(self._serve_dir)
        peers = [str(p) for p in self.metrics.peers if str(p) != directory]
        also = f" plus {', '.join(peers)}" if peers else ""
        return f"Prometheus multi-process files in {directory}{also} (this box's processes)"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.db.observer = self.statements.observe
        if self.watch_loop:
            await self.monitor.start()
        self._cpu = self._cpu_seconds()
        self._sample_process()
        self._task = asyncio.get_running_loop().create_task(self._periodic(), name="observability")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
        self.db.observer = None
        await self.monitor.stop()

    async def _periodic(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(PROCESS_SECONDS)
            now = time.monotonic()
            try:
                self._sample_process()
                if now - last_flush >= self.flush_seconds:
                    last_flush = now
                    await self.flush()
                if self.sampling:
                    await self.offer_sample()
            except Exception as exc:  # keep watching; say what went wrong
                log.warning("observability tick failed", error=repr(exc))

    # -- the process -----------------------------------------------------------------------

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def _sample_process(self) -> None:
        with self._process.oneshot():
            self.metrics.memory.set(self._process.memory_info().rss)
            self.metrics.open_fds.set(self._process.num_fds())
            cpu = self._cpu_seconds()
        self.metrics.cpu.inc(max(0.0, cpu - self._cpu))
        self._cpu = cpu

    # -- statements ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Add this process's statement numbers to the shared file (kept on failure)."""
        async with self._flush_lock:
            rows = self.statements.take()
            if not rows:
                return
            try:
                await asyncio.to_thread(self.stats_file.add_statements, rows)
            except sqlite3.Error as exc:
                self.statements.put_back(rows)
                log.warning("could not save statement statistics", error=str(exc))

    async def top_statements(
        self, limit: int = 20, order: Order = "total"
    ) -> tuple[str, list[Statement]]:
        """``(source, rows)``: ``pg_stat_statements`` where loaded, else the shared file."""
        from_server = await pg_stat_statements(self.db, limit, order)
        if from_server is not None:
            return "pg_stat_statements", from_server
        await self.flush()  # this process's latest numbers; others' are at most a flush late
        return "monolith", await asyncio.to_thread(self.stats_file.top, limit, order)

    # -- scrapes and samples ---------------------------------------------------------------

    async def scrape_families(self) -> list[Metric]:
        """Families measured now by the registered sources; a failing source is skipped."""
        found: list[Metric] = []
        for source in self.sources:
            try:
                found.extend(await source())
            except Exception as exc:
                log.warning("a metrics source failed", source=repr(source), error=repr(exc))
        return found

    async def render(self) -> bytes:
        extra = await self.scrape_families()
        return await asyncio.to_thread(self.metrics.render, extra)

    async def offer_sample(self, now: float | None = None) -> bool:
        """Store the sample of the current slot unless another process did; True if stored."""
        stamp = time.time() if now is None else now
        slot = int(stamp // history.SAMPLE_SECONDS)
        if await asyncio.to_thread(self.stats_file.has_sample, slot):
            return False
        extra = await self.scrape_families()
        families = await asyncio.to_thread(self.metrics.families, extra)
        data = json.dumps(history.snapshot(families))
        try:
            return await asyncio.to_thread(
                self.stats_file.add_sample, slot, stamp, data, history.KEEP_SAMPLES
            )
        except sqlite3.Error as exc:
            log.warning("could not save a dashboard sample", error=str(exc))
            return False

    async def last_hour(self) -> dict[str, list[Any]]:
        rows = await asyncio.to_thread(self.stats_file.samples, time.time() - 3600 - 60)
        return history.series([(ts, json.loads(data)) for ts, data in rows])
