"""Recurring schedules: APScheduler 3.11 fires them, the queue makes each fire run once.

APScheduler only decides *when*. Each fire enqueues the schedule's job with the unique key
``schedule:<name>:<fire time>``, so a fire that two processes both see (an election changing
hands at that second, a restart) still becomes one job. Interval schedules are anchored at a
fixed epoch, so every process computes the same fire times.

Fires missed while no process led (everything was down) are coalesced into one: the last fire
of each schedule is recorded in ``job_schedules``; on start, if a fire fell due since then, one
job is enqueued for the first missed fire time and the schedule carries on from now. Fires
APScheduler itself ran late (a busy event loop) are coalesced by APScheduler the same way.

Why APScheduler 3.11 and how: its in-memory job store only, in the elected process (3.x job
stores must not be shared between processes); 4.0 alpha ran jobs twice and lost running jobs
when measured here. A custom executor hands the scheduled fire time to :meth:`Scheduler.fire`,
since 3.x calls plain job functions without it. This module must never run a job itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monolith.errors import StateUnavailable
from monolith.jobqueue.registry import JobsHandle, Schedule

log = structlog.get_logger("monolith.jobs")

_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
#: A fire's job keeps its key after success until pruned, so the fire is never enqueued twice.
FIRE_HOLD_SECONDS = 366 * 86400.0


def trigger_of(schedule: Schedule) -> Any:
    if schedule.every is not None:
        return IntervalTrigger(seconds=schedule.every, start_date=_ANCHOR, timezone=UTC)
    assert schedule.cron is not None
    return CronTrigger.from_crontab(schedule.cron, timezone=UTC)


def fire_key(schedule: Schedule, fire_at: datetime) -> str:
    return f"schedule:{schedule.name}:{fire_at.timestamp():.3f}"


class _FireExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """Runs each fire as ``fire(schedule name, scheduled time)`` on the event loop."""

    def __init__(self, fire: Callable[[str, datetime], Coroutine[Any, Any, None]]) -> None:
        super().__init__()
        self._fire = fire

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        task = self._eventloop.create_task(self._fire(job.id, run_times[-1]))
        self._pending_futures.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._pending_futures.discard(done)
            error = None if done.cancelled() else done.exception()
            if error is None:
                self._run_job_success(job.id, [])
            else:
                self._run_job_error(job.id, error, error.__traceback__)

        task.add_done_callback(finished)


def _placeholder() -> None:
    """APScheduler wants a callable per job; fires go through :class:`_FireExecutor`."""


class Scheduler:
    def __init__(self, jobs: JobsHandle) -> None:
        self.jobs = jobs
        self.schedules = dict(jobs.registry.schedules)
        self._aps: Any = None

    async def start(self) -> None:
        await self._catch_up()
        aps = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": _FireExecutor(self.fire)},
            # One run per late burst; never skipped for lateness.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        for schedule in self.schedules.values():
            aps.add_job(_placeholder, trigger_of(schedule), id=schedule.name, name=schedule.name)
        aps.start()
        self._aps = aps
        log.info("scheduler started", schedules=sorted(self.schedules))

    async def stop(self) -> None:
        aps, self._aps = self._aps, None
        if aps is not None:
            aps.shutdown(wait=False)

    async def fire(self, name: str, fire_at: datetime) -> None:
        """Enqueue the fire of ``name`` at ``fire_at`` (once, whoever else fires it)."""
        schedule = self.schedules[name]
        for _ in range(3):
            try:
                async with self.jobs.db.transaction() as tx:
                    await self.jobs.enqueue(
                        schedule.job,
                        schedule.payload,
                        unique_key=fire_key(schedule, fire_at),
                        unique_for=FIRE_HOLD_SECONDS,
                        tx=tx,
                    )
                    await _record(tx, name, fire_at.timestamp())
                return
            except StateUnavailable as exc:
                log.warning("schedule fire not enqueued, retrying", schedule=name, error=str(exc))
                await asyncio.sleep(1)
        log.error("schedule fire lost: the database stayed unavailable", schedule=name)

    async def _catch_up(self) -> None:
        now = datetime.now(UTC)
        for schedule in self.schedules.values():
            last = await self.jobs.db.fetch_val(
                "SELECT last_fire_at FROM job_schedules WHERE name = ?", (schedule.name,)
            )
            if last is None:  # new schedule: nothing was missed; remember since when
                async with self.jobs.db.transaction() as tx:
                    await _record(tx, schedule.name, now.timestamp())
                continue
            last_at = datetime.fromtimestamp(float(last), UTC)
            missed = trigger_of(schedule).get_next_fire_time(
                last_at, last_at + timedelta(microseconds=1)
            )
            if missed is not None and missed < now:
                log.info("schedule missed fires; running once", schedule=schedule.name)
                await self.fire(schedule.name, missed)
                async with self.jobs.db.transaction() as tx:  # covered up to now
                    await _record(tx, schedule.name, now.timestamp())


async def _record(tx: Any, name: str, fire_at: float) -> None:
    await tx.execute(
        "INSERT INTO job_schedules (name, last_fire_at) VALUES (?, ?) ON CONFLICT (name) "
        "DO UPDATE SET last_fire_at = CASE WHEN excluded.last_fire_at > "
        "job_schedules.last_fire_at THEN excluded.last_fire_at ELSE job_schedules.last_fire_at END",
        (name, fire_at),
    )
