"""Background jobs: declare them with ``@job``, schedule them with :func:`schedule`, add them
with :meth:`Jobs.enqueue` (inside the caller's transaction when given ``tx``).

    @job("orders.confirm", max_attempts=5, timeout=30)
    async def confirm(ctx: JobContext) -> None:
        ...  # ctx.payload, ctx.attempt, ctx.services

    async with svc.db.transaction() as tx:
        order_id = await insert_order(tx, ...)
        await svc.jobs.enqueue("orders.confirm", {"order_id": order_id}, tx=tx)

A job accepted by ``enqueue`` is in the database: it runs at least once even if processes die,
so a job must be safe to run twice. Payloads are JSON (never pickle: a payload crosses
processes and sits on disk). :class:`Jobs` is the app's component: every process can enqueue
and inspect; a process built with ``run=True`` runs jobs (on PostgreSQL every such process, on
SQLite by default the elected one: ``MONOLITH_JOBS_RUNNERS``) and competes in the election,
whose winner runs the scheduler. This module never touches a connection at import.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from monolith.config import JobSettings
from monolith.db import Database, Transaction
from monolith.errors import NotStarted, StateUnavailable, UnknownJob
from monolith.jobqueue import open_queue
from monolith.jobqueue.base import STATES, JobQueue, NewJob, QueueStats
from monolith.state import HoldsState

#: A due job waiting longer than this with no runner progress makes the app unready.
STALL_SECONDS = 60.0
_BACKOFF_CAP = 3600.0


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job function receives: its decoded payload, which attempt this is, the app."""

    id: int
    name: str
    attempt: int
    max_attempts: int
    payload: Any
    #: The key it was enqueued with (a schedule's fire: ``schedule:<name>:<fire time>``).
    unique_key: str | None
    jobs: Jobs
    services: Any
    #: Set when the job is cancelled (``monolith jobs cancel ID``): a long job checks it (or
    #: waits on it) and returns; one that does not is stopped a few seconds later.
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


JobFunction = Callable[[JobContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A registered job: its function and how it is run."""

    name: str
    fn: JobFunction
    max_attempts: int = 5
    timeout: float | None = 300.0
    queue: str = "default"
    # At most this many run at once across every process (None: no cap).
    concurrency: int | None = None
    # The first retry waits about this long; each further one twice as long, with jitter.
    backoff: float = 2.0
    # A succeeded job keeps its unique key this many seconds (None: free at once).
    unique_for: float | None = None

    def retry_delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: exponential, capped, jittered (0.5x-1.5x)."""
        base = min(_BACKOFF_CAP, self.backoff * 2.0 ** max(0, attempt - 1))
        return base * (0.5 + random.random())


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring fire of a job: ``cron`` (crontab, UTC) or ``every`` seconds."""

    name: str
    job: str
    cron: str | None = None
    every: float | None = None
    payload: Any = None


class Registry:
    """Jobs and schedules by name. Registering is import-time and touches nothing else."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobSpec] = {}
        self.schedules: dict[str, Schedule] = {}
        #: Per-queue caps on jobs running at once everywhere (settings may override them).
        self.queue_limits: dict[str, int] = {}

    def job(
        self,
        name: str,
        *,
        max_attempts: int = 5,
        timeout: float | None = 300.0,
        queue: str = "default",
        concurrency: int | None = None,
        backoff: float = 2.0,
        unique_for: float | None = None,
    ) -> Callable[[JobFunction], JobFunction]:
        """Register an async function as the job ``name`` (in ``queue``)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

        def register(fn: JobFunction) -> JobFunction:
            self.jobs[name] = JobSpec(
                name, fn, max_attempts, timeout, queue, concurrency, backoff, unique_for
            )
            return fn

        return register

    def queue(self, name: str, *, limit: int) -> None:
        """Cap the jobs of queue ``name`` running at once across every runner."""
        if limit < 1:
            raise ValueError("a queue's limit must be at least 1")
        self.queue_limits[name] = limit

    def schedule(
        self,
        name: str,
        job: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        payload: Any = None,
    ) -> None:
        """Fire ``job`` on a crontab (UTC) or every ``every`` seconds, at most once per fire."""
        if (cron is None) == (every is None):
            raise ValueError(f"schedule {name!r}: give exactly one of cron= or every=")
        self.schedules[name] = Schedule(name, job, cron, every, payload)

    def get(self, name: str) -> JobSpec:
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownJob(f"no job named {name!r} is registered") from None

    def limits(self) -> dict[str, int]:
        """Per-name caps, for claims."""
        return {n: s.concurrency for n, s in self.jobs.items() if s.concurrency is not None}


#: The registry that ``@job`` and ``schedule`` fill; the app's jobs live in it.
REGISTRY = Registry()
job = REGISTRY.job
schedule = REGISTRY.schedule
queue = REGISTRY.queue


def runner_id() -> str:
    """A name for this runner that no other process, here or on another box, will use."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class JobMetrics(Protocol):
    """Where job counts go (:class:`monolith.observability.Metrics` is one)."""

    def job_enqueued(self, name: str, count: int = 1) -> None: ...

    def job_finished(self, name: str, outcome: str, seconds: float) -> None: ...


class Jobs:
    """The job component: enqueue and inspect anywhere; run jobs where elected (``run=True``)."""

    def __init__(
        self,
        db: Database,
        settings: JobSettings,
        *,
        data_dir: Path,
        registry: Registry = REGISTRY,
        run: bool = False,
        services: Any = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.settings = settings
        self.data_dir = data_dir
        self.registry = registry
        self.run = run
        self.services = services
        self._queue: JobQueue | None = None
        self._host: Any = None

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
        """Import the app's jobs and the configured modules so their ``@job``s register."""
        for module in ("monolith.tasks", "monolith.jobqueue.pruning", *self.settings.modules):
            importlib.import_module(module)
        if "jobs.prune" in self.registry.jobs:  # the queue's retention, on its own schedule
            self.registry.schedule("jobs.prune", "jobs.prune", every=self.settings.prune_seconds)

    async def start(self) -> None:
        if self._queue is not None:
            return
        self.load_modules()
        self._queue = open_queue(self.db, self.data_dir)
        if self.run:
            from monolith.jobqueue.host import JobHost

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
        """Whether this process won the election (it runs the scheduler) right now."""
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
        empty = dict.fromkeys(STATES, 0)
        return [
            {
                "name": name,
                "paused": name in states and states[name].paused,
                "limit": limits.get(name),
                "counts": states[name].counts if name in states else dict(empty),
            }
            for name in sorted(named)
        ]

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

        With ``tx`` the job commits or rolls back with the caller's transaction. Higher
        ``priority`` runs first; ``delay`` is in seconds. A unique key is held while its job
        is queued or running, and after success for ``unique_for`` seconds (default: the
        job's ``@job(unique_for=...)``); a failed or cancelled job does not hold it.
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
            raise StateUnavailable(why, retry_after=5)


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
