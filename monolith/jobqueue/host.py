"""Which job-running process does what: every one runs jobs, the elected one runs the scheduler.

Every process built to run jobs (``serve``'s workers with ``MONOLITH_RUN_JOBS=auto``, and
``monolith worker``, on every instance) runs this loop. Its runner claims and runs jobs
alongside every other runner (on PostgreSQL ``FOR UPDATE SKIP LOCKED`` hands each its own
rows); the election picks the one process whose scheduler fires the schedules, so each fire
is enqueued once per tick. On SQLite the same holds on one box (its one writer serializes the
claims; more runners still measured faster: docs/BENCHMARKS.md). ``MONOLITH_JOBS_RUNNERS=leader``
makes the elected process the only runner too.

The loop tries to lead every ``retry`` seconds; while leading it checks the lock every
``retry`` seconds and steps down if it was lost, so when the leader dies a follower leads
within about ``retry`` seconds. Stepping down stops the scheduler (and, in ``leader`` mode,
the runner with its grace period), then releases the lock. This module never runs jobs itself.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from monolith.jobqueue.registry import JobsHandle, runner_id
from monolith.jobqueue.runner import Runner
from monolith.jobqueue.scheduler import Scheduler

log = structlog.get_logger("monolith.jobs")

RETRY_SECONDS = 1.0


def every_process_runs(jobs: JobsHandle) -> bool:
    """Whether each job-running process runs jobs (else only the elected one)."""
    return jobs.settings.runners == "every"


class JobHost:
    def __init__(self, jobs: JobsHandle, *, retry: float = RETRY_SECONDS) -> None:
        self.jobs = jobs
        self.retry = retry
        self.election = jobs.queue.election()
        self.every = every_process_runs(jobs)
        self.runner: Runner | None = None
        self.scheduler: Scheduler | None = None
        self._leading = False
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._leading

    async def start(self) -> None:
        if self.every:
            await self._start_runner()
        self._loop = asyncio.create_task(self._lead(), name="jobs-election")

    async def stop(self) -> None:
        """Step down and stop the runner (jobs in hand get the grace period)."""
        self._stopping.set()
        if self._loop is not None:
            await self._loop
        await self._step_down()
        await self._stop_runner()

    async def _lead(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._leading:
                    if await self.election.try_acquire() and not self._stopping.is_set():
                        await self._take_over()
                elif not await self.election.holding():
                    log.warning("lost the scheduler election; stepping down")
                    await self._step_down()
            except Exception:
                # The database may be down; keep trying, leases keep the jobs safe meanwhile.
                log.exception("job scheduler election failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry)

    async def _take_over(self) -> None:
        try:
            self._leading = True
            if not self.every:
                await self._start_runner()
            self.scheduler = Scheduler(self.jobs)
            await self.scheduler.start()
        except BaseException:
            await self._step_down()
            raise

    async def _start_runner(self) -> None:
        runner = Runner(self.jobs, runner_id())
        await runner.start()
        self.runner = runner

    async def _stop_runner(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.stop(self.jobs.settings.grace_seconds)

    async def _step_down(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        if not self.every:
            await self._stop_runner()
        self._leading = False
        await self.election.release()
