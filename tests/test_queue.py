"""The job queue's conformance suite: every behaviour, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monolith.db import Database, open_database
from monolith.jobqueue import open_queue
from monolith.jobqueue.base import (
    MAX_RESCUES,
    STATES,
    JobQueue,
    Limits,
    NewJob,
    Outcome,
    RunnerInfo,
)

pytestmark = pytest.mark.profile_independent


def new(name: str = "t.job", **kw: object) -> NewJob:
    fields: dict[str, object] = {"payload": "{}", "run_at": time.time()} | kw
    return NewJob(name, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def queue(db: Database, data_dir: Path) -> AsyncIterator[JobQueue]:
    q = open_queue(db, data_dir)
    yield q
    await q.close()


@pytest.fixture
async def other_db(db: Database, db_url: str) -> AsyncIterator[Database]:
    """A second connection set to the same database, as another process would have."""
    database = open_database(db_url)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
async def other(other_db: Database, data_dir: Path) -> AsyncIterator[JobQueue]:
    q = open_queue(other_db, data_dir)
    yield q
    await q.close()


async def test_an_added_job_is_claimed_once_with_a_lease(queue: JobQueue) -> None:
    job_id = await queue.add(new(payload='{"a": 1}'))
    claimed = await queue.claim("w1", 10, lease=30)
    assert [j.id for j in claimed.jobs] == [job_id]
    job = claimed.jobs[0]
    assert (job.state, job.attempts, job.worker, job.payload) == ("running", 1, "w1", '{"a": 1}')
    assert job.lease_until is not None
    assert job.lease_until > time.time()
    assert (await queue.claim("w2", 10, lease=30)).jobs == []


async def test_claims_take_higher_priority_first_then_the_oldest(queue: JobQueue) -> None:
    now = time.time()
    low_old = await queue.add(new(run_at=now - 10))
    high = await queue.add(new(priority=5, run_at=now - 1))
    low_new = await queue.add(new(run_at=now - 5))
    claimed = await queue.claim("w", 2, lease=30)
    assert [j.id for j in claimed.jobs] == [high, low_old]
    assert [j.id for j in (await queue.claim("w", 2, lease=30)).jobs] == [low_new]


async def test_a_delayed_job_waits_until_due_and_next_due_says_when(queue: JobQueue) -> None:
    due = time.time() + 60
    await queue.add(new(run_at=due))
    claimed = await queue.claim("w", 10, lease=30)
    assert claimed.jobs == []
    assert await queue.next_due() == pytest.approx(due)


async def test_a_unique_key_is_held_while_queued_or_running_and_freed_by_success(
    queue: JobQueue,
) -> None:
    first = await queue.add(new(unique_key="k"))
    assert first is not None
    assert await queue.add(new(unique_key="k")) is None
    job = (await queue.claim("w", 10, lease=30)).jobs[0]
    assert await queue.add(new(unique_key="k")) is None  # running: still held
    await queue.finish("w", [Outcome(job.id)])
    done = await queue.get(first)
    assert done is not None
    assert (done.state, done.unique_key) == ("done", "k")  # kept, showing its key
    second = await queue.add(new(unique_key="k"))
    assert second is not None
    assert second > first


async def test_a_unique_key_held_for_a_period_after_success(queue: JobQueue) -> None:
    first = await queue.add(new(unique_key="k", unique_for=0.5))
    job = (await queue.claim("w", 10, lease=30)).jobs[0]
    await queue.finish("w", [Outcome(job.id)])
    assert await queue.add(new(unique_key="k", unique_for=0.5)) is None
    deadline = time.monotonic() + 10
    while (again := await queue.add(new(unique_key="k"))) is None:
        assert time.monotonic() < deadline, "the hold never ended"
        await asyncio.sleep(0.05)
    assert again > first  # type: ignore[operator]


async def test_a_failed_or_cancelled_unique_job_lets_go_of_its_key(queue: JobQueue) -> None:
    failed = await queue.add(new(unique_key="k", max_attempts=1))
    await queue.claim("w", 10, lease=30)
    await queue.finish("w", [Outcome(failed, error="boom")])  # type: ignore[arg-type]
    assert (await queue.get(failed)).state == "failed"  # type: ignore[arg-type,union-attr]
    cancelled = await queue.add(new(unique_key="k"))
    assert cancelled is not None
    assert (await queue.cancel(cancelled)).state == "cancelled"  # type: ignore[union-attr]
    third = await queue.add(new(unique_key="k"))
    assert third is not None
    # Retrying the failed one runs it again, but the key stays with the job holding it now.
    retried = await queue.retry(failed)  # type: ignore[arg-type]
    assert retried is not None
    assert retried.state == "queued"
    assert await queue.add(new(unique_key="k")) is None


async def test_a_finished_job_is_kept_until_pruned_and_ids_are_never_reused(
    queue: JobQueue,
) -> None:
    ids = [await queue.add(new()) for _ in range(3)]
    claimed = (await queue.claim("w", 10, lease=30)).jobs
    await queue.finish("w", [Outcome(j.id) for j in claimed])
    assert [j.state for j in await queue.list("done")] == ["done"] * 3
    assert (await queue.stats()).counts["done"] == 3
    assert await queue.prune(finished_before=time.time() - 60, runners_older_than=0) == 0
    assert await queue.prune(finished_before=time.time() + 1, runners_older_than=0) == 3
    assert await queue.list() == []
    later = await queue.add(new())
    assert later is not None
    assert later > max(i for i in ids if i is not None)


async def test_enqueue_commits_and_rolls_back_with_the_callers_transaction(
    db: Database, queue: JobQueue
) -> None:
    async def order_that_fails() -> None:
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO products (name, price_cents, created_at, updated_at) "
                "VALUES ('x', 1, 0, 0)"
            )
            await queue.add(new(name="t.rolled_back"), tx=tx)
            raise RuntimeError("the order failed")

    with pytest.raises(RuntimeError):
        await order_that_fails()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO products (name, price_cents, created_at, updated_at) VALUES ('y', 1, 0, 0)"
        )
        await queue.add(new(name="t.committed"), tx=tx)
    assert [j.name for j in await queue.list()] == ["t.committed"]
    assert await db.fetch_val("SELECT COUNT(*) FROM products") == 1


async def test_an_expired_lease_is_claimed_again_and_the_old_result_ignored(
    queue: JobQueue,
) -> None:
    job_id = await queue.add(new())
    await queue.claim("dead", 10, lease=-1)  # its process died: the lease is already over
    again = (await queue.claim("alive", 10, lease=30)).jobs
    # A rescue: the attempt the dead runner made does not count.
    assert [(j.id, j.attempts, j.rescues, j.worker) for j in again] == [(job_id, 1, 1, "alive")]
    await queue.finish("dead", [Outcome(job_id, error="late", retry_at=time.time())])  # type: ignore[arg-type]
    job = await queue.get(job_id)  # type: ignore[arg-type]
    assert job is not None
    assert (job.state, job.worker, job.last_error) == ("running", "alive", None)


async def test_a_job_whose_runner_keeps_dying_is_rescued_a_bounded_number_of_times(
    queue: JobQueue,
) -> None:
    job_id = await queue.add(new(max_attempts=1))
    for rescue in range(MAX_RESCUES + 1):  # the first run, then MAX_RESCUES rescues
        [job] = (await queue.claim("dead", 10, lease=-1)).jobs
        assert (job.attempts, job.rescues) == (1, rescue)
    assert (await queue.claim("alive", 10, lease=30)).jobs == []
    job = await queue.get(job_id)  # type: ignore[arg-type]
    assert job is not None
    assert (job.state, job.attempts, job.rescues) == ("failed", 1, MAX_RESCUES + 1)
    assert "runner stopped without finishing it 4 times" in (job.last_error or "")
    # A failed job lets go of nothing it should not, and an operator can run it again.
    assert (await queue.retry(job_id)).rescues == 0  # type: ignore[arg-type,union-attr]


async def test_cancel_ends_a_queued_job_and_marks_a_running_one(queue: JobQueue) -> None:
    waiting = await queue.add(new(run_at=time.time() + 60))
    running = await queue.add(new())
    [job] = (await queue.claim("w", 10, lease=30)).jobs
    assert job.id == running
    assert (await queue.cancel(waiting)).state == "cancelled"  # type: ignore[arg-type,union-attr]
    marked = await queue.cancel(running)  # type: ignore[arg-type]
    assert marked is not None
    assert (marked.state, marked.cancel_at is not None) == ("running", True)
    assert await queue.cancels_for("w") == [running]
    assert await queue.cancels_for("other") == []
    await queue.finish("w", [Outcome(running, error="cancelled", cancelled=True)])  # type: ignore[arg-type]
    assert (await queue.get(running)).state == "cancelled"  # type: ignore[arg-type,union-attr]
    assert await queue.cancel(running) is None  # type: ignore[arg-type]
    assert (await queue.stats()).counts["cancelled"] == 2


async def test_a_paused_queue_hands_out_nothing_until_resumed(
    queue: JobQueue, other: JobQueue
) -> None:
    mail = await queue.add(new(queue="email"))
    await queue.add(new(queue="default"))
    await other.pause("email")
    assert [j.queue for j in (await queue.claim("w", 10, lease=30)).jobs] == ["default"]
    assert (await queue.claim("w", 10, lease=30)).jobs == []
    assert await queue.next_due() is None
    assert (await queue.stats()).oldest_due_at is None  # a paused queue is not a stall
    states = {q.name: (q.paused, q.counts["queued"]) for q in await queue.queue_states()}
    assert states == {"default": (False, 0), "email": (True, 1)}
    await other.pause("email", paused=False)
    assert [j.id for j in (await queue.claim("w", 10, lease=30)).jobs] == [mail]


async def test_a_queue_limit_holds_across_claimers(queue: JobQueue, other: JobQueue) -> None:
    for _ in range(5):
        await queue.add(new(queue="email"))
    caps = Limits(queues={"email": 2})
    first = await queue.claim("a", 1, lease=30, limits=caps)
    second = await other.claim("b", 10, lease=30, limits=caps)
    emails = first.jobs + second.jobs
    assert [len(first.jobs), len(second.jobs)] == [1, 1]
    assert (await queue.claim("a", 10, lease=30, limits=caps)).jobs == []
    # A full capped queue does not keep the jobs of another queue waiting.
    plain = await queue.add(new(queue="default"))
    assert [j.id for j in (await other.claim("b", 10, lease=30, limits=caps)).jobs] == [plain]
    await queue.finish(emails[0].worker, [Outcome(emails[0].id)])  # type: ignore[arg-type]
    assert len((await other.claim("b", 10, lease=30, limits=caps)).jobs) == 1


async def test_a_failure_is_retried_at_its_time_then_kept_failed_with_its_error(
    queue: JobQueue,
) -> None:
    job_id = await queue.add(new(max_attempts=2))
    assert job_id is not None
    await queue.claim("w", 10, lease=30)
    later = time.time() + 60
    await queue.finish("w", [Outcome(job_id, error="boom 1", retry_at=later)])
    job = await queue.get(job_id)
    assert job is not None
    assert (job.state, job.run_at, job.last_error) == (
        "queued",
        later,
        "boom 1",
    )
    assert (await queue.claim("w", 10, lease=30)).jobs == []  # not due yet
    await queue.retry(job_id)  # an operator says: now
    assert (await queue.claim("w", 10, lease=30)).jobs[0].attempts == 1
    await queue.finish("w", [Outcome(job_id, error="boom 2")])
    failed = await queue.list("failed")
    assert [(j.id, j.last_error) for j in failed] == [(job_id, "boom 2")]


async def test_retry_and_discard_act_on_failed_jobs_but_not_running_ones(
    queue: JobQueue,
) -> None:
    job_id = await queue.add(new(max_attempts=1))
    assert job_id is not None
    await queue.claim("w", 10, lease=30)
    assert await queue.retry(job_id) is None
    assert await queue.discard(job_id) is None
    await queue.finish("w", [Outcome(job_id, error="boom")])
    retried = await queue.retry(job_id)
    assert retried is not None
    assert (retried.state, retried.attempts) == ("queued", 0)
    assert [j.id for j in (await queue.claim("w", 10, lease=30)).jobs] == [job_id]
    await queue.finish("w", [Outcome(job_id, error="boom again")])
    assert (await queue.discard(job_id)) is not None
    assert await queue.get(job_id) is None
    assert await queue.retry(12345) is None


async def test_released_jobs_run_again_without_losing_an_attempt(queue: JobQueue) -> None:
    ids = [await queue.add(new()) for _ in range(3)]
    await queue.claim("w", 10, lease=30)
    assert await queue.release("w", [ids[0]]) == 1  # type: ignore[list-item]
    assert await queue.release("w") == 2
    again = (await queue.claim("w2", 10, lease=30)).jobs
    assert sorted(j.id for j in again) == sorted(ids)  # type: ignore[type-var]
    assert {j.attempts for j in again} == {1}


async def test_per_name_concurrency_caps_hold_across_processes(
    queue: JobQueue, other: JobQueue
) -> None:
    await queue.add_many([new(name="capped") for _ in range(5)] + [new(name="free")])
    limits = {"capped": 2}
    first = await queue.claim("a", 10, lease=30, limits=limits)
    assert sorted(j.name for j in first.jobs) == ["capped", "capped", "free"]
    assert (await other.claim("b", 10, lease=30, limits=limits)).jobs == []
    await queue.finish("a", [Outcome(first.jobs[0].id)])
    assert [j.name for j in (await other.claim("b", 10, lease=30, limits=limits)).jobs] == [
        "capped"
    ]


async def test_capped_jobs_behind_the_head_of_the_line_keep_their_cap(queue: JobQueue) -> None:
    """A claim looks for capped jobs among the first due ones only; those further back are
    still counted before they are claimed, and never claimed past their cap."""
    now = time.time()
    await queue.add_many(new(name="free", run_at=now - 10) for _ in range(30))
    await queue.add_many(new(name="capped", run_at=now - 5) for _ in range(3))
    limits = {"capped": 1}
    claimed = (await queue.claim("w", 10, lease=30, limits=limits)).jobs
    assert {j.name for j in claimed} == {"free"}
    seen: list[str] = []
    while jobs := (await queue.claim("w", 10, lease=30, limits=limits)).jobs:
        seen += [j.name for j in jobs]
        running = await queue.db.fetch_val(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND name = 'capped'"
        )
        assert running <= 1
        await queue.finish("w", [Outcome(j.id) for j in jobs if j.name == "capped"])
    assert sorted(seen) == ["capped"] * 3 + ["free"] * 20


async def test_counts_per_state_and_queue_match_the_table(queue: JobQueue) -> None:
    await queue.add_many([new(queue="mail") for _ in range(4)] + [new() for _ in range(3)])
    claimed = (await queue.claim("w", 5, lease=30)).jobs
    failed = Outcome(claimed[1].id, error="boom")
    cancelled = Outcome(claimed[2].id, error="stop", cancelled=True)
    await queue.finish("w", [Outcome(claimed[0].id), failed, cancelled])
    queued = await queue.add(new(queue="mail"))
    await queue.cancel(queued)  # type: ignore[arg-type]
    rows = await queue.db.fetch_all("SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state")
    expected: dict[str, dict[str, int]] = {}
    for row in rows:
        expected.setdefault(row[0], dict.fromkeys(STATES, 0))[row[1]] = int(row[2])
    states = await queue.queue_states()
    assert {q.name: q.counts for q in states} == expected
    totals = {state: sum(c[state] for c in expected.values()) for state in STATES}
    assert (await queue.stats()).counts == totals
    assert all(totals[state] for state in STATES)


async def test_the_claim_walks_the_claim_index_on_sqlite(queue: JobQueue) -> None:
    """Not every queued row read and sorted: the first entries of jobs_claim, in order."""
    if queue.db.dialect != "sqlite":
        pytest.skip("SQLite's planner; PostgreSQL plans by its statistics")
    await queue.add_many(new() for _ in range(50))
    seen: list[str] = []
    queue.db.observer = lambda sql, seconds, rows: seen.append(sql)  # type: ignore[attr-defined]
    await queue.claim("w", 10, lease=30, queues=["default"], limits={"capped": 1})
    queue.db.observer = None  # type: ignore[attr-defined]
    claims = [sql for sql in seen if "ORDER BY priority DESC" in sql]
    assert len(claims) == 2  # the look for capped jobs at the head, and the claim
    with sqlite3.connect(queue.db.path) as conn:  # type: ignore[attr-defined]
        for sql in claims:
            plan = " | ".join(
                str(row[3])
                for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * sql.count("?"))
            )
            assert "USING INDEX jobs_claim" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


async def test_concurrent_claimers_never_share_a_job(queue: JobQueue, other: JobQueue) -> None:
    await queue.add_many(new() for _ in range(300))

    async def drain(q: JobQueue, worker: str) -> list[int]:
        got: list[int] = []
        while jobs := (await q.claim(worker, 7, lease=30)).jobs:
            got += [j.id for j in jobs]
            await asyncio.sleep(0)
        return got

    a, b = await asyncio.gather(drain(queue, "a"), drain(other, "b"))
    assert len(a) + len(b) == 300
    assert len(set(a) | set(b)) == 300


async def test_queues_filter_what_a_runner_claims(queue: JobQueue) -> None:
    await queue.add(new(queue="mail"))
    media = await queue.add(new(queue="media"))
    claimed = await queue.claim("w", 10, lease=30, queues=["media"])
    assert [j.id for j in claimed.jobs] == [media]


async def test_heartbeat_keeps_leases_and_stats_show_runners(queue: JobQueue) -> None:
    job_id = await queue.add(new())
    await queue.claim("w", 1, lease=-1)
    other_id = await queue.add(new())
    runner = RunnerInfo("w", "box", 42, time.time(), 0, time.time(), 7)
    await queue.heartbeat(runner, lease=30)
    job = await queue.get(job_id)  # type: ignore[arg-type]
    assert job is not None
    assert job.lease_until is not None
    assert job.lease_until > time.time()
    assert [j.id for j in (await queue.claim("x", 10, lease=30)).jobs] == [other_id]
    stats = await queue.stats()
    assert stats.counts == {"queued": 0, "running": 2, "done": 0, "failed": 0, "cancelled": 0}
    assert [(r.id, r.pid, r.completed) for r in stats.runners] == [("w", 42, 7)]
    await queue.release("w")
    assert (await queue.stats()).runners == []


async def test_stats_report_the_oldest_due_job(queue: JobQueue) -> None:
    await queue.add(new(run_at=time.time() + 60))
    assert (await queue.stats()).oldest_due_at is None
    past = time.time() - 30
    await queue.add(new(run_at=past))
    assert (await queue.stats()).oldest_due_at == pytest.approx(past)


async def test_an_enqueue_in_another_process_wakes_the_listener(
    queue: JobQueue, other: JobQueue
) -> None:
    await queue.wakeup.listen()
    try:
        assert await queue.wakeup.wait(0.05) is False
        await other.add(new())
        assert await queue.wakeup.wait(10) is True
        assert await queue.wakeup.wait(0.05) is False  # consumed
    finally:
        await queue.wakeup.close()


async def test_an_enqueue_wakes_every_listening_runner(queue: JobQueue, other: JobQueue) -> None:
    await queue.wakeup.listen()
    await other.wakeup.listen()
    try:
        await queue.add(new())
        assert await queue.wakeup.wait(10) is True
        assert await other.wakeup.wait(10) is True
    finally:
        await queue.wakeup.close()
        await other.wakeup.close()


async def test_only_one_process_leads_until_it_steps_down(queue: JobQueue, other: JobQueue) -> None:
    first, second = queue.election(), other.election()
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.holding()
        await first.release()
        assert not await first.holding()
        assert await second.try_acquire()
        assert not await first.try_acquire()
    finally:
        await first.release()
        await second.release()


async def test_a_job_asked_to_stop_that_fails_anyway_ends_cancelled(queue: JobQueue) -> None:
    retrying, failing = await queue.add(new()), await queue.add(new(max_attempts=1))
    await queue.claim("w", 10, lease=30)
    for job_id in (retrying, failing):
        await queue.cancel(job_id)  # type: ignore[arg-type]
    await queue.finish(
        "w",
        [
            Outcome(retrying, error="boom", retry_at=time.time()),  # type: ignore[arg-type]
            Outcome(failing, error="boom"),  # type: ignore[arg-type]
        ],
    )
    for job_id in (retrying, failing):
        job = await queue.get(job_id)  # type: ignore[arg-type]
        assert job is not None
        assert (job.state, job.last_error) == ("cancelled", "boom")
        assert job.finished_at is not None
