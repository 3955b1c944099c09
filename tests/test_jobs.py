"""Jobs end to end in one process: registry, enqueue, runner, election, scheduler, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monolith.config import JobSettings
from monolith.db import Database, open_database
from monolith.errors import UnknownJob
from monolith.jobqueue.base import QueueStats, RunnerInfo
from monolith.jobqueue.scheduler import Scheduler
from monolith.jobs import STALL_SECONDS, JobContext, Jobs, JobSpec, Registry, judge

pytestmark = pytest.mark.profile_independent

FAST = JobSettings(concurrency=10, lease_seconds=5, grace_seconds=5, poll_seconds=0.2)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the condition never became true"
        await asyncio.sleep(0.02)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def make_jobs(
    db: Database, data_dir: Path, registry: Registry
) -> AsyncIterator[Callable[..., Awaitable[Jobs]]]:
    started: list[Jobs] = []

    async def make(run: bool = True, database: Database = db, **settings: object) -> Jobs:
        jobs = Jobs(
            database,
            replace(FAST, **settings),  # type: ignore[arg-type]
            data_dir=data_dir,
            registry=registry,
            run=run,
            context=None,
        )
        await jobs.start()
        started.append(jobs)
        return jobs

    yield make
    for jobs in reversed(started):
        await jobs.stop()


async def test_an_enqueued_job_runs_with_its_payload(make_jobs, registry: Registry) -> None:
    seen: list[object] = []

    @registry.job("t.echo")
    async def echo(ctx: JobContext) -> None:
        seen.append((ctx.payload, ctx.attempt))

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.echo", {"n": 1})

    async def ran() -> bool:
        return bool(seen)

    await eventually(ran)
    assert seen == [({"n": 1}, 1)]
    await eventually(lambda: _done(jobs, job_id))


async def _done(jobs: Jobs, job_id: int | None) -> bool:
    assert job_id is not None
    job = await jobs.queue.get(job_id)
    return job is not None and job.state == "done"


async def test_enqueueing_an_unknown_job_is_refused(make_jobs) -> None:
    jobs = await make_jobs(run=False)
    with pytest.raises(UnknownJob):
        await jobs.enqueue("t.nothing")


async def test_a_failing_job_is_retried_then_kept_failed_and_retry_runs_it_again(
    make_jobs, registry: Registry
) -> None:
    runs: list[int] = []
    healed = False

    @registry.job("t.flaky", max_attempts=3, backoff=0.05)
    async def flaky(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if not healed:
            raise ValueError(f"broken on attempt {ctx.attempt}")

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.flaky")
    assert job_id is not None

    async def failed() -> bool:
        job = await jobs.queue.get(job_id)
        return job is not None and job.state == "failed"

    await eventually(failed)
    assert runs == [1, 2, 3]
    [dead] = await jobs.queue.list("failed")
    assert (dead.id, dead.attempts, dead.last_error) == (
        job_id,
        3,
        "ValueError: broken on attempt 3",
    )
    healed = True
    assert await jobs.queue.retry(job_id) is not None
    await eventually(lambda: _done(jobs, job_id))
    assert runs == [1, 2, 3, 1]


def test_retry_delays_grow_exponentially_with_jitter() -> None:
    spec = JobSpec("t", lambda ctx: asyncio.sleep(0), backoff=2.0)
    for attempt, base in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 1024.0), (30, 3600.0)]:
        delays = [spec.retry_delay(attempt) for _ in range(50)]
        assert all(0.5 * base <= d <= 1.5 * base for d in delays)
        assert len(set(delays)) > 1  # jittered, so retries of many jobs do not stampede


async def test_a_job_past_its_timeout_fails_as_timed_out(make_jobs, registry: Registry) -> None:
    @registry.job("t.slow", max_attempts=1, timeout=0.05)
    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.slow")

    async def failed() -> bool:
        return [j.id for j in await jobs.queue.list("failed")] == [job_id]

    await eventually(failed)
    assert (await jobs.queue.list("failed"))[0].last_error == "timed out after 0.05s"


async def test_per_name_concurrency_is_respected(make_jobs, registry: Registry) -> None:
    running, peak, done = 0, 0, 0

    @registry.job("t.capped", concurrency=2)
    async def capped(ctx: JobContext) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    jobs = await make_jobs()
    await jobs.enqueue_many("t.capped", [None] * 12)

    async def all_done() -> bool:
        return done == 12

    await eventually(all_done)
    assert peak == 2


async def test_stopping_lets_jobs_in_hand_finish(make_jobs, registry: Registry) -> None:
    finished: list[int] = []
    started = asyncio.Event()

    @registry.job("t.work")
    async def work(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(ctx.id)

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.work")
    await asyncio.wait_for(started.wait(), 20)
    await jobs.stop()
    assert finished == [job_id]
    rows = await jobs.db.fetch_all("SELECT id, state FROM jobs")
    assert [(row[0], row[1]) for row in rows] == [(job_id, "done")]


async def test_stopping_past_the_grace_hands_jobs_back_unharmed(
    make_jobs, registry: Registry
) -> None:
    started = asyncio.Event()

    @registry.job("t.long")
    async def long(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    jobs = await make_jobs(grace_seconds=0)
    job_id = await jobs.enqueue("t.long")
    await asyncio.wait_for(started.wait(), 20)
    await jobs.stop()
    row = await jobs.db.fetch_one(
        "SELECT state, attempts, worker FROM jobs WHERE id = ?", (job_id,)
    )
    assert row is not None
    assert (row[0], row[1], row[2]) == ("queued", 0, None)


async def test_one_process_leads_and_another_takes_over_when_it_stops(
    make_jobs, db: Database, db_url: str
) -> None:
    other_db = open_database(db_url)
    await other_db.start()
    try:
        first = await make_jobs()
        await eventually(_leading(first))
        second = await make_jobs(database=other_db)
        await asyncio.sleep(0.3)  # several election rounds pass
        assert not second.leading
        await first.stop()
        await eventually(_leading(second))
        await second.stop()
    finally:
        await other_db.stop()


def _leading(jobs: Jobs) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return jobs.leading

    return check


async def test_a_schedule_fire_becomes_one_job_however_often_it_is_fired(
    make_jobs, registry: Registry
) -> None:
    @registry.job("t.tick")
    async def tick(ctx: JobContext) -> None:
        return None

    registry.schedule("tick", "t.tick", every=60)
    jobs = await make_jobs(run=False)
    scheduler = Scheduler(jobs)
    fire_at = datetime(2030, 1, 1, tzinfo=UTC)
    await asyncio.gather(*(scheduler.fire("tick", fire_at) for _ in range(3)))
    await scheduler.fire("tick", fire_at.replace(minute=1))
    keys = [j.unique_key for j in await jobs.queue.list()]
    assert sorted(keys) == [  # type: ignore[type-var]
        f"schedule:tick:{fire_at.timestamp():.3f}",
        f"schedule:tick:{fire_at.replace(minute=1).timestamp():.3f}",
    ]


async def test_fires_missed_while_down_are_coalesced_into_one(
    make_jobs, registry: Registry, db: Database
) -> None:
    @registry.job("t.tick")
    async def tick(ctx: JobContext) -> None:
        return None

    registry.schedule("tick", "t.tick", every=60)
    jobs = await make_jobs(run=False)
    last = (int(time.time()) // 60 - 10) * 60  # ten fires ago
    await db.execute("INSERT INTO job_schedules (name, last_fire_at) VALUES ('tick', ?)", (last,))
    scheduler = Scheduler(jobs)
    await scheduler.start()
    await scheduler.stop()
    assert [j.unique_key for j in await jobs.queue.list()] == [f"schedule:tick:{last + 60:.3f}"]
    # A restart right after finds nothing more to catch up.
    await Scheduler(jobs).start()
    assert len(await jobs.queue.list()) == 1


async def test_the_leader_fires_schedules(make_jobs, registry: Registry) -> None:
    ticks: list[str | None] = []

    @registry.job("t.tick")
    async def tick(ctx: JobContext) -> None:
        ticks.append("tick")

    registry.schedule("tick", "t.tick", every=0.2)
    await make_jobs()

    async def ticked() -> bool:
        return len(ticks) >= 2

    await eventually(ticked)


def _stats(oldest: float | None, runners: list[RunnerInfo]) -> QueueStats:
    return QueueStats({"queued": 3, "running": 0, "failed": 0, "done": 0}, oldest, runners)


def test_health_fails_only_when_due_jobs_wait_without_progress() -> None:
    now = 1_000_000.0
    late = now - STALL_SECONDS - 1
    alive = RunnerInfo("r", "h", 1, now - 500, now - 1, now - 2, 10)
    stuck = replace(alive, progress_at=now - STALL_SECONDS - 5)
    silent = replace(alive, seen_at=now - 120)
    assert judge(_stats(None, []), now, lease=30)[0]  # nothing due: fine without a runner
    assert judge(_stats(now - 5, []), now, lease=30)[0]  # just due: give it a moment
    assert judge(_stats(late, [alive]), now, lease=30)[0]
    ok, why = judge(_stats(late, [stuck]), now, lease=30)
    assert not ok
    assert "no progress" in why
    ok, why = judge(_stats(late, [silent]), now, lease=30)
    assert not ok
    assert "no job runner is alive" in why


async def _state(jobs: Jobs, job_id: int | None) -> str | None:
    assert job_id is not None
    job = await jobs.queue.get(job_id)
    return None if job is None else job.state


async def test_a_running_job_is_told_to_stop_through_its_context(
    make_jobs, registry: Registry
) -> None:
    started, saw = asyncio.Event(), []

    @registry.job("t.long", max_attempts=5)
    async def long(ctx: JobContext) -> None:
        started.set()
        await asyncio.wait_for(ctx.cancelled.wait(), 60)
        saw.append(ctx.id)

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.long")
    await asyncio.wait_for(started.wait(), 20)
    assert (await jobs.queue.cancel(job_id)).state == "running"  # type: ignore[arg-type,union-attr]

    async def cancelled() -> bool:
        return await _state(jobs, job_id) == "cancelled"

    await eventually(cancelled)
    assert saw == [job_id]
    job = await jobs.queue.get(job_id)  # type: ignore[arg-type]
    assert job is not None
    assert (job.attempts, job.last_error) == (1, "cancelled (it returned)")


async def test_a_job_that_does_not_listen_is_stopped_and_ends_cancelled(
    make_jobs, registry: Registry
) -> None:
    started = asyncio.Event()

    @registry.job("t.deaf", max_attempts=5, timeout=120)
    async def deaf(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(120)

    jobs = await make_jobs()
    job_id = await jobs.enqueue("t.deaf")
    await asyncio.wait_for(started.wait(), 20)
    await jobs.queue.cancel(job_id)  # type: ignore[arg-type]

    async def cancelled() -> bool:
        return await _state(jobs, job_id) == "cancelled"

    await eventually(cancelled, within=30)
    job = await jobs.queue.get(job_id)  # type: ignore[arg-type]
    assert job is not None
    assert "did not return within" in (job.last_error or "")


@pytest.fixture
async def other_db(db: Database, db_url: str) -> AsyncIterator[Database]:
    """A second connection set to the same database, as another process would have."""
    database = open_database(db_url)
    await database.start()
    yield database
    await database.stop()


async def test_with_every_runner_each_process_runs_jobs_and_one_leads(
    other_db: Database, make_jobs, registry: Registry
) -> None:
    pids: list[int] = []

    @registry.job("t.where")
    async def where(ctx: JobContext) -> None:
        await asyncio.sleep(0.05)
        pids.append(id(ctx.jobs))

    first = await make_jobs(runners="every", concurrency=2)
    second = await make_jobs(database=other_db, runners="every", concurrency=2)

    async def both_run() -> bool:
        return first.running_jobs and second.running_jobs and (first.leading or second.leading)

    await eventually(both_run)
    assert not (first.leading and second.leading)
    await first.enqueue_many("t.where", [None] * 40)

    async def all_ran() -> bool:
        return len(pids) == 40

    await eventually(all_ran)
    assert set(pids) == {id(first), id(second)}
