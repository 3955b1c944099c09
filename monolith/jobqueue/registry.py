"""The job registry: what ``@job`` and ``schedule`` declare, by name.

Registering happens at import time and touches nothing else. The registry knows nothing of
queues, runners or the app: :mod:`monolith.jobqueue.component` runs what it holds.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from monolith.config import JobSettings
from monolith.database.base import Database, Transaction
from monolith.errors import UnknownJob
from monolith.jobqueue.base import Job, JobQueue

_BACKOFF_CAP = 3600.0

#: A job function: ``async def fn(ctx: JobContext[Components]) -> None``. The registry stores
#: it without its context type; the function's own annotation is what mypy checks it against.
JobFunction = Callable[[Any], Awaitable[object]]
F = TypeVar("F", bound=JobFunction)


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
    ) -> Callable[[F], F]:
        """Register an async function as the job ``name`` (in ``queue``)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

        def register(fn: F) -> F:
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


class JobsHandle(Protocol):
    """What the runner, the scheduler and the election loop use of the job component
    (:class:`monolith.jobqueue.component.Jobs`); they are given one and never import it."""

    @property
    def db(self) -> Database: ...

    @property
    def settings(self) -> JobSettings: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def metrics(self) -> JobMetrics | None: ...

    @property
    def queue(self) -> JobQueue: ...

    def context(self, job: Job, cancelled: asyncio.Event) -> object:
        """The argument a job function is called with for this run of ``job``; ``cancelled``
        is set when the job is asked to stop."""

    def queue_limits(self) -> dict[str, int]:
        """Per-queue caps on jobs running at once across every runner."""

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
    ) -> int | None: ...
