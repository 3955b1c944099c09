"""The runner: claims due jobs in batches and runs them concurrently, in the elected process.

Three loops share one event loop: the claim loop (claim a batch into free slots, else sleep
until woken, until the next job falls due, or the poll interval), the flush loop (write every
finished attempt in one transaction: while one flush commits, the next batch gathers), and the
heartbeat (renew the leases of jobs in hand and report the runner alive).

Stopping (SIGTERM) never loses a job: claiming stops first; jobs in hand get the grace period;
those still running are cancelled, and after the last flush every job this runner still holds
is released to run again elsewhere (the attempt does not count). A crash instead leaves leases
that expire, after which any runner claims those jobs again. The runner must never swallow a
job's outcome: every attempt ends as done, retry or failed, or is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from monolith.errors import StateUnavailable, UnknownJob
from monolith.jobqueue.base import Job, Outcome, RunnerInfo
from monolith.jobqueue.registry import JobsHandle

log = structlog.get_logger("monolith.jobs")
T = TypeVar("T")

_BATCH = 100  # jobs per claim; more only lengthens the claim's write transaction
_RETRY_STORE = 1.0  # seconds between attempts to reach a database that is down


class Runner:
    def __init__(self, jobs: JobsHandle, worker: str) -> None:
        self.jobs = jobs
        self.queue = jobs.queue
        self.id = worker
        settings = jobs.settings
        self.concurrency = settings.concurrency
        self.lease = float(settings.lease_seconds)
        self.poll = settings.poll_seconds
        self.started_at = time.time()
        self.progress_at = self.started_at
        self.completed = 0
        self._in_hand: dict[int, asyncio.Task[None]] = {}
        self._started: dict[int, float] = {}  # job id -> perf_counter when its run began
        self._outcomes: list[Outcome] = []
        self._slot_free = asyncio.Event()
        self._to_flush = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self.queue.wakeup.listen()
        await self._beat()
        self._flushing = asyncio.create_task(self._flush_loop(), name="jobs-flush")
        self._beating = asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat")
        self._claiming = asyncio.create_task(self._claim_loop(), name="jobs-claim")
        log.info("job runner started", runner=self.id, concurrency=self.concurrency)

    async def stop(self, grace: float) -> None:
        """Stop claiming, give jobs in hand ``grace`` seconds, hand back what is left."""
        await _cancel(self._claiming)
        if self._in_hand:
            log.info("waiting for jobs in hand", count=len(self._in_hand), grace=grace)
            _, pending = await asyncio.wait(list(self._in_hand.values()), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Not cancelled: a flush cut off mid-transaction would drop the outcomes it carried.
        self._closing = True
        self._to_flush.set()
        if self._flushing is not None:
            await self._flushing
        await self._flush(tries=5)
        await _cancel(self._beating)
        released = await _persist(lambda: self.queue.release(self.id), "release jobs", 5)
        await self.queue.wakeup.close()
        log.info("job runner stopped", runner=self.id, released=released)

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        limits = self.jobs.registry.limits()
        while True:
            free = self.concurrency - len(self._in_hand)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            want = min(free, _BATCH)
            try:
                claimed = await self.queue.claim(self.id, want, lease=self.lease, limits=limits)
            except Exception as exc:
                # Down, busy, or not migrated yet: nothing was claimed; try again shortly.
                log.warning("cannot claim jobs", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(_RETRY_STORE)
                continue
            for job in claimed.jobs:
                self._in_hand[job.id] = asyncio.create_task(self._run(job))
            if len(claimed.jobs) == want:
                continue  # there may be more due right now
            idle = self.poll
            if claimed.next_run_at is not None:
                idle = min(idle, max(0.0, claimed.next_run_at - time.time()))
            await self.queue.wakeup.wait(idle)

    # -- running ---------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        self._started[job.id] = time.perf_counter()
        try:
            try:
                spec = self.jobs.registry.get(job.name)
            except UnknownJob as exc:
                # Perhaps a newer release enqueued it: keep it for a process that knows it.
                self._failed(job, str(exc), lambda attempt: 60.0 * attempt)
                return
            try:
                ctx = self.jobs.context(job)
                async with asyncio.timeout(spec.timeout):
                    await spec.fn(ctx)
            except TimeoutError:
                self._failed(job, f"timed out after {spec.timeout:g}s", spec.retry_delay)
            except Exception as exc:
                self._failed(job, f"{type(exc).__name__}: {exc}", spec.retry_delay)
            else:
                self._done(Outcome(job.id))
                self._count(job, "succeeded")
        finally:
            # Cancelled (stopping past the grace): no outcome; the release hands it back.
            self._started.pop(job.id, None)
            del self._in_hand[job.id]
            self._slot_free.set()

    def _failed(self, job: Job, error: str, delay: Callable[[int], float]) -> None:
        if job.attempts >= job.max_attempts:
            log.error("job failed for good", job=job.id, name=job.name, error=error)
            self._done(Outcome(job.id, error=error))
            self._count(job, "failed")
            return
        retry_at = time.time() + delay(job.attempts)
        log.warning(
            "job failed, will retry",
            job=job.id,
            name=job.name,
            attempt=job.attempts,
            error=error,
            retry_in=round(retry_at - time.time(), 2),
        )
        self._done(Outcome(job.id, error=error, retry_at=retry_at))
        self._count(job, "retried")

    def _count(self, job: Job, outcome: str) -> None:
        metrics = self.jobs.metrics
        if metrics is not None:
            started = self._started.get(job.id, time.perf_counter())
            metrics.job_finished(job.name, outcome, time.perf_counter() - started)

    def _done(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._to_flush.set()

    # -- recording -------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while not self._closing:
            await self._to_flush.wait()
            self._to_flush.clear()
            await self._flush()

    async def _flush(self, tries: int | None = None) -> None:
        """Write every outcome gathered so far in one transaction (retrying while down)."""
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        await _persist(lambda: self.queue.finish(self.id, batch), "record job results", tries)
        self.completed += len(batch)
        self.progress_at = time.time()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._beat()
            except Exception as exc:
                log.warning("job heartbeat failed", error=str(exc) or type(exc).__name__)

    async def _beat(self) -> None:
        info = RunnerInfo(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.started_at,
            time.time(),
            self.progress_at,
            self.completed,
        )
        await self.queue.heartbeat(info, lease=self.lease)


async def _persist(
    call: Callable[[], Awaitable[T]], what: str, tries: int | None = None
) -> T | None:
    """Retry a write while the database is unavailable: a job's outcome is not dropped lightly.

    With ``tries`` (when stopping) it gives up after that many; the jobs it concerned then
    run again once their leases lapse.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except StateUnavailable as exc:
            attempt += 1
            if tries is not None and attempt >= tries:
                log.error(f"could not {what}; the jobs will run again", error=str(exc))
                return None
            log.warning(f"could not {what}, retrying", error=str(exc))
            await asyncio.sleep(_RETRY_STORE)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
