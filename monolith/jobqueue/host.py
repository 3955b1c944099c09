"""Leadership: the process that wins the election runs the runner and the scheduler.

Every process built to run jobs (``serve``'s workers with ``MONOLITH_RUN_JOBS=auto``, and
``monolith worker``) runs this loop: try to lead every ``retry`` seconds; while leading, check
the lock every ``retry`` seconds and step down if it was lost. So when the leader dies, a
follower leads within about ``retry`` seconds. Stepping down stops the scheduler, then the
runner with its grace period, then releases the lock. This module must never run jobs itself.
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


class JobHost:
    def __init__(self, jobs: JobsHandle, *, retry: float = RETRY_SECONDS) -> None:
        self.jobs = jobs
        self.retry = retry
        self.election = jobs.queue.election()
        self.runner: Runner | None = None
        self.scheduler: Scheduler | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.runner is not None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._lead(), name="jobs-election")

    async def stop(self) -> None:
        """Step down (jobs in hand get the grace period) and stop competing."""
        self._stopping.set()
        if self._loop is not None:
            await self._loop
        await self._step_down()

    async def _lead(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.runner is None:
                    if await self.election.try_acquire() and not self._stopping.is_set():
                        await self._take_over()
                elif not await self.election.holding():
                    log.warning("lost the job runner election; stepping down")
                    await self._step_down()
            except Exception:
                # The database may be down; keep trying, leases keep the jobs safe meanwhile.
                log.exception("job runner election failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry)

    async def _take_over(self) -> None:
        try:
            self.runner = Runner(self.jobs, runner_id())
            await self.runner.start()
            self.scheduler = Scheduler(self.jobs)
            await self.scheduler.start()
        except BaseException:
            await self._step_down()
            raise

    async def _step_down(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.stop(self.jobs.settings.grace_seconds)
        await self.election.release()
