"""The job component: :class:`Jobs` enqueues and inspects anywhere, and runs jobs where built
with ``run=True`` (every such process, unless ``MONOLITH_JOBS_RUNNERS=leader``; the
election's winner runs the scheduler); :class:`JobContext` is
what a job function receives. See :mod:`monolith.jobs`
for how application code uses them. This module never touches a connection at import.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from monolith.config import JobSettings
from monolith.database.base import Database, Transaction
from monolith.errors import NotStarted, StateUnavailable
from monolith.jobqueue import open_queue
from monolith.jobqueue.base import STATES, Job, JobQueue, NewJob, QueueStats
from monolith.jobqueue.host import JobHost
from monolith.jobqueue.pruning import PRUNE_JOB
from monolith.jobqueue.registry import REGISTRY, JobMetrics, Registry
from monolith.state import HoldsState

#: A due job waiting longer than this with no runner progress makes the app unready.
STALL_SECONDS = 60.0

#: What the app hands its jobs (``monolith.services.Components`` in the app; anything in tests).
C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class JobContext(Generic[C]):
    """What a job function receives: its decoded payload, which attempt this is, the job
    component, and the app's components (typed: ``JobContext[Components]``)."""

    id: int
    name: str
    attempt: int
    max_attempts: int
    payload: Any
    #: The key it was enqueued with (a schedule's fire: ``schedule:<name>:<fire time>``).
    unique_key: str | None
    jobs: Jobs[C]
    services: C
    #: Set when the job is cancelled (``monolith jobs cancel ID``): a long job checks it (or
    #: waits on it) and returns; one that does not is stopped a few seconds later.
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Jobs(Generic[C]):
    """The job component: enqueue and inspect anywhere; run jobs where elected (``run=True``)."""

    def __init__(
        self,
        db: Database,
        settings: JobSettings,
        *,
        data_dir: Path,
        registry: Registry = REGISTRY,
        run: bool = False,
        context: C,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.data_dir = data_dir
        self.registry = registry
        self.run = run
        #: What job functions get as ``ctx.services``.
        self.components = context
        self._queue: JobQueue | None = None
        self._host: JobHost | None = None

    @property
    def queue(self) -> JobQueue:
        if self._queue is None:
            raise NotStarted("Jobs used before start(); the app lifespan starts it")
        return self._queue

    def state_holders(self) -> dict[str, HoldsState]:
        """Where the queue and the runner's election live, for ``doctor``; connects to nothing."""
        queue = self._queue or open_queue(self.db, self.data_dir)
        return {"jobs": queue, "schedules": queue.election()}

    def load_modules(self) -> None:
        """Import the modules named by ``MONOLITH_JOBS_MODULES`` so their ``@job``s register
        (the app's own jobs register when :mod:`monolith.features` is imported)."""
        for module in self.settings.modules:
            importlib.import_module(module)
        if PRUNE_JOB in self.registry.jobs:  # the queue's retention, on its own schedule
            self.registry.schedule(PRUNE_JOB, PRUNE_JOB, every=self.settings.prune_seconds)

    async def start(self) -> None:
        if self._queue is not None:
            return
        self.load_modules()
        self._queue = open_queue(self.db, self.data_dir)
        if self.run:
            self._host = JobHost(self)
            await self._host.start()

    async def stop(self) -> None:
        """Stop running jobs (those in hand get the grace period) and let go of the queue."""
        host, self._host = self._host, None
        if host is not None:
            await host.stop()
        queue, self._queue = self._queue, None
        if queue is not None:
            await queue.close()

    @property
    def leading(self) -> bool:
        """Whether this process runs the runner and scheduler right now."""
        return self._host is not None and self._host.leading

    @property
    def running_jobs(self) -> bool:
        """Whether this process's runner claims and runs jobs right now."""
        return self._host is not None and self._host.runner is not None

    def queue_limits(self) -> dict[str, int]:
        """Per-queue caps: the registry's, replaced by the settings' one by one."""
        return {**self.registry.queue_limits, **self.settings.queue_limits}

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue a job names, a cap mentions, holding jobs or ever paused: by name,
        ``{name, paused, limit, counts}`` (``limit`` None: no cap)."""
        limits = self.queue_limits()
        states = {q.name: q for q in await self.queue.queue_states()}
        named = {spec.queue for spec in self.registry.jobs.values()} | set(limits) | set(states)
        return [
            {
                "name": name,
                "paused": name in states and states[name].paused,
                "limit": limits.get(name),
                "counts": states[name].counts if name in states else dict.fromkeys(STATES, 0),
            }
            for name in sorted(named)
        ]

    def context(self, job: Job, cancelled: asyncio.Event | None = None) -> JobContext[C]:
        """The argument a job function is called with for this run of ``job``."""
        return JobContext(
            id=job.id,
            name=job.name,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            payload=msgspec.json.decode(job.payload),
            unique_key=job.unique_key,
            jobs=self,
            services=self.components,
            cancelled=cancelled or asyncio.Event(),
        )

    def new_job(
        self,
        name: str,
        payload: Any = None,
        *,
        delay: float | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> NewJob:
        spec = self.registry.get(name)
        return NewJob(
            name=name,
            payload=msgspec.json.encode(payload).decode(),
            run_at=time.time() + (delay or 0.0),
            queue=spec.queue,
            priority=priority,
            max_attempts=spec.max_attempts,
            unique_key=unique_key,
            unique_for=spec.unique_for if unique_for is None else unique_for,
        )

    async def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        delay: float | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        unique_for: float | None = None,
        tx: Transaction | None = None,
    ) -> int | None:
        """Add a job; its id, or None when ``unique_key`` is already held by another job.

        A unique key is held while its job is queued or running, and after success for
        ``unique_for`` seconds (default: the job's ``@job(unique_for=...)``); a failed or
        cancelled job does not hold it.

        With ``tx`` the job commits or rolls back with the caller's transaction. Higher
        ``priority`` runs first; ``delay`` is in seconds.
        """
        new = self.new_job(
            name,
            payload,
            delay=delay,
            priority=priority,
            unique_key=unique_key,
            unique_for=unique_for,
        )
        job_id = await self.queue.add(new, tx=tx)
        if job_id is not None:
            self._count_enqueued(name, 1, tx)
        return job_id

    async def enqueue_many(
        self, name: str, payloads: Iterable[Any], *, tx: Transaction | None = None
    ) -> int:
        """Add one job per payload in one transaction; how many were given."""
        news = [self.new_job(name, payload) for payload in payloads]
        await self.queue.add_many(news, tx=tx)
        self._count_enqueued(name, len(news), tx)
        return len(news)

    def _count_enqueued(self, name: str, count: int, tx: Transaction | None) -> None:
        metrics = self.metrics
        if metrics is None or not count:
            return
        if tx is None:
            metrics.job_enqueued(name, count)
        else:  # a job rolled back with its transaction was never enqueued
            tx.on_commit(lambda: metrics.job_enqueued(name, count))

    async def health(self) -> tuple[bool, str]:
        """Whether due jobs are being worked off: (healthy, one-line reason)."""
        stats = await self.queue.stats()
        return judge(stats, time.time(), lease=self.settings.lease_seconds)

    async def check(self) -> None:
        """The readiness check: raise :class:`StateUnavailable` naming what is wrong."""
        ok, why = await self.health()
        if not ok:
            raise StateUnavailable(why, retry_after=5, public=why)


def judge(stats: QueueStats, now: float, *, lease: float) -> tuple[bool, str]:
    """Unhealthy when a job has been due for a while and no runner is alive or progressing."""
    waiting = stats.counts.get("queued", 0)
    if stats.oldest_due_at is None or stats.oldest_due_at > now - STALL_SECONDS:
        return True, f"ok: {waiting} queued, {stats.counts.get('running', 0)} running"
    late = now - stats.oldest_due_at
    alive = [r for r in stats.runners if r.seen_at >= now - lease]
    if not alive:
        return False, f"no job runner is alive and a job has waited {late:.0f}s"
    progress = max(r.progress_at for r in alive)
    if progress < now - STALL_SECONDS:
        return False, f"the job runner made no progress for {now - progress:.0f}s with jobs due"
    return True, f"ok: {waiting} queued, the oldest due for {late:.0f}s"
