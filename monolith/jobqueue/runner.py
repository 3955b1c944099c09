"""The runner: claims due jobs in batches and runs them concurrently, in each job process.

Four loops share one event loop: the claim loop (claim a batch of the runner's queues into
free slots, else sleep until woken, until the next job falls due, or the poll interval), the
flush loop (write every finished attempt in one transaction: while one flush commits, the
next batch gathers), the heartbeat (renew the leases of jobs in hand and report the runner
alive) and the cancel watch (twice a second, while jobs are in hand, a read of which of them
were asked to stop).

Cancelling a running job is cooperative first, as in Oban and Solid Queue: the job's
``ctx.cancelled`` event is set; a job that returns or raises after that ends ``cancelled``.
One that does not listen is stopped (its task cancelled) ``MONOLITH_JOBS_CANCEL_GRACE``
(5 s) later, or by its own ``timeout`` if that comes first, and ends ``cancelled`` too.

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
from monolith.jobqueue.base import Job, Limits, Outcome, RunnerInfo
from monolith.jobqueue.registry import JobsHandle

log = structlog.get_logger("monolith.jobs")
T = TypeVar("T")

_BATCH = 100  # jobs per claim; more only lengthens the claim's write transaction
_RETRY_STORE = 1.0  # seconds between attempts to reach a database that is down
_CANCEL_POLL = 0.5  # seconds between looks for cancels of jobs in hand
_REAP_EVERY = 1.0  # seconds between claims that also hand back the jobs of dead runners
#: Busy (its last claim, or its last record, less than _BUSY ago), the runner waits _GATHER
#: after a wake-up before it claims, and after a job ends before it records, so the jobs
#: enqueued (or ended) meanwhile share one transaction. Woken by every order at a few hundred
#: a second, the runners claimed one job a transaction (and of two workers woken, one claimed
#: nothing) and recorded one outcome a transaction. Idle, it claims and records at once: a
#: job into an idle queue starts within the wake-up's milliseconds.
_GATHER = 0.005
_BUSY = 0.015


class Runner:
    def __init__(self, jobs: JobsHandle, worker: str) -> None:
        self.jobs = jobs
        self.queue = jobs.queue
        self.id = worker
        settings = jobs.settings
        self.concurrency = settings.concurrency
        self.queues: list[str] | None = list(settings.queues) or None
        self.limits = Limits(names=jobs.registry.limits(), queues=jobs.queue_limits())
        self.lease = float(settings.lease_seconds)
        self.poll = settings.poll_seconds
        self.cancel_grace = settings.cancel_grace_seconds
        self.started_at = time.time()
        self.progress_at = self.started_at
        self.completed = 0
        self._in_hand: dict[int, asyncio.Task[None]] = {}
        self._started: dict[int, float] = {}  # job id -> perf_counter when its run began
        self._cancels: dict[int, asyncio.Event] = {}  # job id -> its ctx.cancelled
        self._stopping_jobs: set[int] = set()  # told to stop and past the grace: cancelled
        self._outcomes: list[Outcome] = []
        self._slot_free = asyncio.Event()
        self._to_flush = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._closing = False
        self._freed_capped = False

    async def start(self) -> None:
        await self.queue.wakeup.listen()
        await self._beat()
        self._flushing = asyncio.create_task(self._flush_loop(), name="jobs-flush")
        self._beating = asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat")
        self._watching = asyncio.create_task(self._cancel_loop(), name="jobs-cancels")
        self._claiming = asyncio.create_task(self._claim_loop(), name="jobs-claim")
        log.info(
            "job runner started",
            runner=self.id,
            concurrency=self.concurrency,
            queues=self.queues or "all",
        )

    async def stop(self, grace: float) -> None:
        """Stop claiming, give jobs in hand ``grace`` seconds, hand back what is left."""
        await _cancel(self._claiming)
        await _cancel(self._watching)
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
        limits = self.limits
        reaped_at = claimed_at = 0.0
        while True:
            free = self.concurrency - len(self._in_hand)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            want = min(free, _BATCH)
            reap = time.monotonic() - reaped_at >= _REAP_EVERY
            try:
                claimed = await self.queue.claim(
                    self.id, want, lease=self.lease, queues=self.queues, limits=limits, reap=reap
                )
            except Exception as exc:
                # Down, busy, or not migrated yet: nothing was claimed; try again shortly.
                log.warning("cannot claim jobs", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(_RETRY_STORE)
                continue
            if reap:
                reaped_at = time.monotonic()
            if claimed.jobs:
                claimed_at = time.monotonic()
            for job in claimed.jobs:
                self._in_hand[job.id] = asyncio.create_task(self._run(job))
            if len(claimed.jobs) == want:
                continue  # there may be more due right now
            idle = self.poll
            try:
                next_run_at = await self.queue.next_due(self.queues)
            except Exception:
                next_run_at = None  # the poll interval still finds it
            if next_run_at is not None:
                idle = min(idle, max(0.0, next_run_at - time.time()))
            if await self.queue.wakeup.wait(idle) and time.monotonic() - claimed_at < _BUSY:
                await asyncio.sleep(_GATHER)

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
            cancelled = self._cancels[job.id] = asyncio.Event()
            try:
                ctx = self.jobs.context(job, cancelled)
                async with asyncio.timeout(spec.timeout):
                    await spec.fn(ctx)
            except TimeoutError:
                if not self._was_cancelled(job, cancelled, f"it timed out after {spec.timeout:g}s"):
                    self._failed(job, f"timed out after {spec.timeout:g}s", spec.retry_delay)
            except asyncio.CancelledError:
                if job.id not in self._stopping_jobs:
                    raise  # the runner is stopping past its grace: the release hands it back
                self._was_cancelled(
                    job, cancelled, f"it did not return within {self.cancel_grace:g}s"
                )
            except Exception as exc:
                if not self._was_cancelled(job, cancelled, f"{type(exc).__name__}: {exc}"):
                    self._failed(job, f"{type(exc).__name__}: {exc}", spec.retry_delay)
            else:
                if not self._was_cancelled(job, cancelled, "it returned"):
                    self._done(Outcome(job.id), job)
                    self._count(job, "succeeded")
        finally:
            # Cancelled (stopping past the grace): no outcome; the release hands it back.
            self._started.pop(job.id, None)
            self._cancels.pop(job.id, None)
            self._stopping_jobs.discard(job.id)
            del self._in_hand[job.id]
            self._slot_free.set()

    def _was_cancelled(self, job: Job, cancelled: asyncio.Event, how: str) -> bool:
        """Record ``job`` as cancelled if it was told to stop; whether it was."""
        if not cancelled.is_set():
            return False
        log.info("job cancelled", job=job.id, name=job.name, how=how)
        self._done(Outcome(job.id, error=f"cancelled ({how})", cancelled=True), job)
        self._count(job, "cancelled")
        return True

    # -- cancelling ------------------------------------------------------------------------

    async def _cancel_loop(self) -> None:
        while True:
            await asyncio.sleep(_CANCEL_POLL)
            if not self._cancels:
                continue
            try:
                ids = await self.queue.cancels_for(self.id)
            except Exception as exc:
                log.warning("cannot look for cancels", error=str(exc) or type(exc).__name__)
                continue
            for job_id in ids:
                event = self._cancels.get(job_id)
                if event is not None and not event.is_set():
                    event.set()
                    asyncio.get_running_loop().call_later(self.cancel_grace, self._stop_job, job_id)

    def _stop_job(self, job_id: int) -> None:
        """A job told to stop that is still running after the grace: cancel its task."""
        task = self._in_hand.get(job_id)
        if task is not None and job_id in self._cancels:
            self._stopping_jobs.add(job_id)
            task.cancel()

    def _failed(self, job: Job, error: str, delay: Callable[[int], float]) -> None:
        if job.attempts >= job.max_attempts:
            log.error("job failed for good", job=job.id, name=job.name, error=error)
            self._done(Outcome(job.id, error=error), job)
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
        self._done(Outcome(job.id, error=error, retry_at=retry_at), job)
        self._count(job, "retried")

    def _count(self, job: Job, outcome: str) -> None:
        metrics = self.jobs.metrics
        if metrics is not None:
            started = self._started.get(job.id, time.perf_counter())
            metrics.job_finished(job.name, outcome, time.perf_counter() - started)

    def _done(self, outcome: Outcome, job: Job) -> None:
        self._outcomes.append(outcome)
        if self.limits.covers(job.name, job.queue):
            self._freed_capped = True  # other runners may be waiting for this slot
        self._to_flush.set()

    # -- recording -------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        flushed_at = 0.0
        while not self._closing:
            await self._to_flush.wait()
            if time.monotonic() - flushed_at < _BUSY:
                await asyncio.sleep(_GATHER)
            self._to_flush.clear()
            await self._flush()
            flushed_at = time.monotonic()

    async def _flush(self, tries: int | None = None) -> None:
        """Write every outcome gathered so far in one transaction (retrying while down)."""
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        wake, self._freed_capped = self._freed_capped, False
        await _persist(
            lambda: self.queue.finish(self.id, batch, wake=wake), "record job results", tries
        )
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
