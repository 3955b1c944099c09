"""The job queue interface: a ``jobs`` table in the app's database that runners claim with leases.

A queue stores jobs and hands them out; it never runs one (that is :mod:`.runner`) and never
decodes a payload (payloads are JSON text, encoded above it in :mod:`monolith.jobs`). It holds
no connection of its own: every statement goes through the :class:`~monolith.db.Database`, so
an enqueue can join the caller's write transaction and commit (or roll back) with it.

Delivery is at least once. A claim marks jobs ``running`` under a lease for one worker; the
worker's heartbeat extends the lease; a job whose lease ran out (its process died) is handed
out again by the next claim, or kept as ``failed`` when that was its last attempt. Completions
and failures are written only while the worker still holds the job, so a late result from a
worker that lost its lease never overwrites the job's newer state.

Backends differ only in how a claim locks (SQLite: the database's one write lock, taken by
``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and in how a list of ids is bound.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from monolith.database.base import Database, Row, Transaction
from monolith.jobqueue.coordination import Election, Wakeup

STATES = ("queued", "running", "failed", "done")

_COLUMNS = (
    "id, name, queue, payload, state, priority, run_at, attempts, max_attempts, unique_key, "
    "worker, lease_until, last_error, created_at, updated_at"
)
_INSERT = (
    "INSERT INTO jobs (name, queue, payload, priority, run_at, max_attempts, unique_key, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unique_key) DO NOTHING"
)
# A lease that ran out: its worker died (or hung past the lease). Out of attempts -> failed.
_REAP = """
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    last_error = CASE WHEN attempts >= max_attempts
        THEN 'the worker running it stopped without finishing it (lease expired)'
        ELSE last_error END,
    run_at = ?, worker = NULL, lease_until = NULL, updated_at = ?
WHERE state = 'running' AND lease_until < ?
"""


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to add: ``payload`` is JSON text; ``run_at`` is epoch seconds."""

    name: str
    payload: str
    run_at: float
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 5
    unique_key: str | None = None

    def row(self, now: float) -> tuple[Any, ...]:
        return (
            self.name,
            self.queue,
            self.payload,
            self.priority,
            self.run_at,
            self.max_attempts,
            self.unique_key,
            now,
            now,
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the queue."""

    id: int
    name: str
    queue: str
    payload: str
    state: str
    priority: int
    run_at: float
    attempts: int
    max_attempts: int
    unique_key: str | None
    worker: str | None
    lease_until: float | None
    last_error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(*(row[i] for i in range(15)))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: success (``error`` None), a retry at ``retry_at``, or failed."""

    id: int
    error: str | None = None
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim handed out, and when the next queued job falls due (None: none queued)."""

    jobs: list[Job]
    next_run_at: float | None


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """A runner process as it last reported itself (one row of ``job_runners``)."""

    id: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    progress_at: float
    completed: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Jobs per state, the oldest job that is due and waiting, and the runners that reported."""

    counts: dict[str, int]
    oldest_due_at: float | None
    runners: list[RunnerInfo] = field(default_factory=list)


class JobQueue(abc.ABC):
    """A durable queue of jobs in the app's database."""

    #: True when claims by several processes on several boxes are safe (not only one box).
    shared: ClassVar[bool] = False

    def __init__(self, db: Database, wakeup: Wakeup) -> None:
        self.db = db
        self.wakeup = wakeup

    @property
    def scope(self) -> str:
        """Who can take jobs from this queue: one box's processes, or every box (``doctor``)."""
        return "shared" if self.shared else "box"

    def describe(self) -> str:
        return f"the jobs table in {self.db.describe()}"

    async def close(self) -> None:
        """Let go of the wake-up channel (the database belongs to the caller)."""
        await self.wakeup.close()

    # -- what a backend supplies -----------------------------------------------------------

    @abc.abstractmethod
    def election(self) -> Election:
        """A new election among the processes that share this queue."""

    @abc.abstractmethod
    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A ``column IN (...)`` condition and its parameters, in the backend's dialect."""

    #: Appended to the claim's SELECT (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
    _claim_lock: ClassVar[str] = ""

    async def _serialize_limited_claims(self, tx: Transaction) -> None:
        """Make claims that count running jobs per name run one at a time.

        Nothing to do by default: on SQLite every write transaction already holds the lock.
        """
        return None

    # -- adding ----------------------------------------------------------------------------

    async def add(self, job: NewJob, *, tx: Transaction | None = None) -> int | None:
        """Add one job; its id, or None when its unique key is already held by another job."""
        if tx is None:
            async with self.db.transaction() as own:
                return await self.add(job, tx=own)
        await self.wakeup.announce(tx)
        return _int_or_none(await tx.fetch_val(f"{_INSERT} RETURNING id", job.row(time.time())))

    async def add_many(self, jobs: Iterable[NewJob], *, tx: Transaction | None = None) -> None:
        """Add many jobs in one statement batch (ids are not reported)."""
        if tx is None:
            async with self.db.transaction() as own:
                return await self.add_many(jobs, tx=own)
        now = time.time()
        await self.wakeup.announce(tx)
        await tx.execute_many(_INSERT, [job.row(now) for job in jobs])

    # -- running ---------------------------------------------------------------------------

    async def claim(
        self,
        worker: str,
        limit: int,
        *,
        lease: float,
        queues: Sequence[str] | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> Claimed:
        """Lease up to ``limit`` due jobs to ``worker``, highest priority then oldest first.

        ``limits`` caps how many jobs of a name may run at once across every worker; the
        count and the claim happen in one serialized transaction so the cap holds.
        """
        limits = dict(limits or {})
        async with self.db.transaction() as tx:
            now = time.time()
            if limits:
                await self._serialize_limited_claims(tx)
            await tx.execute(_REAP, (now, now, now))
            where, params = ["state = 'queued'", "run_at <= ?"], [now]
            if queues is not None:
                cond, values = self._in("queue", list(queues))
                where.append(cond)
                params += values
            room = await self._room(tx, limits)
            full = [name for name, free in room.items() if free <= 0]
            if full:
                cond, values = self._in("name", full)
                where.append(f"NOT {cond}")
                params += values
            # Fetch extra candidates when some names are capped, since some may be skipped.
            fetch = limit * 2 if room else limit
            candidates = await tx.fetch_all(
                f"SELECT id, name FROM jobs WHERE {' AND '.join(where)} "
                f"ORDER BY priority DESC, run_at, id LIMIT {int(fetch)}{self._claim_lock}",
                params,
            )
            chosen: list[int] = []
            for row in candidates:
                name = row[1]
                if name in room:
                    if room[name] <= 0:
                        continue
                    room[name] -= 1
                chosen.append(int(row[0]))
                if len(chosen) >= limit:
                    break
            jobs: list[Job] = []
            if chosen:
                cond, values = self._in("id", chosen)
                rows = await tx.fetch_all(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, "
                    f"lease_until = ?, updated_at = ? WHERE {cond} RETURNING {_COLUMNS}",
                    [worker, now + lease, now, *values],
                )
                jobs = sorted(map(Job.from_row, rows), key=lambda j: (-j.priority, j.run_at, j.id))
            next_run_at = None
            if len(jobs) < limit:
                next_run_at = await tx.fetch_val(
                    "SELECT MIN(run_at) FROM jobs WHERE state = 'queued'"
                )
        return Claimed(jobs, None if next_run_at is None else float(next_run_at))

    async def _room(self, tx: Transaction, limits: Mapping[str, int]) -> dict[str, int]:
        if not limits:
            return {}
        cond, values = self._in("name", list(limits))
        rows = await tx.fetch_all(
            f"SELECT name, COUNT(*) FROM jobs WHERE state = 'running' AND {cond} GROUP BY name",
            values,
        )
        running = {row[0]: int(row[1]) for row in rows}
        return {name: cap - running.get(name, 0) for name, cap in limits.items()}

    async def finish(self, worker: str, outcomes: Sequence[Outcome]) -> None:
        """Record how attempts ended, in one transaction, for jobs ``worker`` still holds.

        A succeeded job is deleted, unless it has a unique key: then it stays ``done`` so the
        key keeps deduplicating until :meth:`prune` removes it.
        """
        if not outcomes:
            return
        now = time.time()
        done = [o.id for o in outcomes if o.error is None]
        retry = [
            (o.retry_at, o.error, now, o.id, worker) for o in outcomes if o.error and o.retry_at
        ]
        dead = [(o.error, now, o.id, worker) for o in outcomes if o.error and o.retry_at is None]
        async with self.db.transaction() as tx:
            if done:
                cond, values = self._in("id", done)
                mine = f"{cond} AND worker = ? AND state = 'running'"
                await tx.execute(
                    "UPDATE jobs SET state = 'done', worker = NULL, lease_until = NULL, "
                    f"updated_at = ? WHERE {mine} AND unique_key IS NOT NULL",
                    [now, *values, worker],
                )
                await tx.execute(f"DELETE FROM jobs WHERE {mine}", [*values, worker])
            if retry:
                await tx.execute_many(
                    "UPDATE jobs SET state = 'queued', run_at = ?, last_error = ?, worker = NULL, "
                    "lease_until = NULL, updated_at = ? WHERE id = ? AND worker = ? "
                    "AND state = 'running'",
                    retry,
                )
            if dead:
                await tx.execute_many(
                    "UPDATE jobs SET state = 'failed', last_error = ?, worker = NULL, "
                    "lease_until = NULL, updated_at = ? WHERE id = ? AND worker = ? "
                    "AND state = 'running'",
                    dead,
                )

    async def heartbeat(self, runner: RunnerInfo, *, lease: float) -> None:
        """Extend the leases of every job ``runner`` holds and record that it is alive."""
        now = time.time()
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE jobs SET lease_until = ? WHERE worker = ? AND state = 'running'",
                (now + lease, runner.id),
            )
            await tx.execute(
                "INSERT INTO job_runners (id, host, pid, started_at, seen_at, progress_at, "
                "completed) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "seen_at = excluded.seen_at, progress_at = excluded.progress_at, "
                "completed = excluded.completed",
                (
                    runner.id,
                    runner.host,
                    runner.pid,
                    runner.started_at,
                    now,
                    runner.progress_at,
                    runner.completed,
                ),
            )

    async def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Hand back jobs ``worker`` holds (all when ``ids`` is None) to run again soon.

        The attempt does not count: the job did not fail, its worker is stopping. With
        ``ids`` None the runner's own record goes too.
        """
        now = time.time()
        where, params = "worker = ? AND state = 'running'", [worker]
        if ids is not None:
            if not ids:
                return 0
            cond, values = self._in("id", list(ids))
            where, params = f"{where} AND {cond}", [worker, *values]
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, worker = NULL, "
                f"lease_until = NULL, run_at = ?, updated_at = ? WHERE {where}",
                [now, now, *params],
            )
            if ids is None:
                await tx.execute("DELETE FROM job_runners WHERE id = ?", (worker,))
        return count

    # -- inspecting and repairing ----------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetch_one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else Job.from_row(row)

    async def list(self, state: str | None = None, *, limit: int = 100) -> list[Job]:
        """Jobs, newest first, optionally of one state."""
        where, params = ("WHERE state = ?", [state]) if state else ("", [])
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT {int(limit)}", params
        )
        return [Job.from_row(row) for row in rows]

    async def retry(self, job_id: int) -> Job | None:
        """Run a failed (or waiting) job again now with fresh attempts; None if it cannot be."""
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?, updated_at = ? "
                f"WHERE id = ? AND state IN ('failed', 'queued') RETURNING {_COLUMNS}",
                (now, now, job_id),
            )
            await self.wakeup.announce(tx)
        return None if row is None else Job.from_row(row)

    async def discard(self, job_id: int) -> Job | None:
        """Delete a job that is not running; the deleted job, or None if it cannot be."""
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(
                f"DELETE FROM jobs WHERE id = ? AND state <> 'running' RETURNING {_COLUMNS}",
                (job_id,),
            )
        return None if row is None else Job.from_row(row)

    async def stats(self) -> QueueStats:
        now = time.time()
        rows = await self.db.fetch_all("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        counts = dict.fromkeys(STATES, 0) | {row[0]: int(row[1]) for row in rows}
        oldest = await self.db.fetch_val(
            "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= ?", (now,)
        )
        runners = await self.db.fetch_all(
            "SELECT id, host, pid, started_at, seen_at, progress_at, completed FROM job_runners "
            "ORDER BY started_at"
        )
        return QueueStats(
            counts=counts,
            oldest_due_at=None if oldest is None else float(oldest),
            runners=[RunnerInfo(*(r[i] for i in range(7))) for r in runners],
        )

    async def prune(self, *, done_older_than: float, runners_older_than: float) -> int:
        """Forget ``done`` records and silent runners last updated before the given times."""
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "DELETE FROM jobs WHERE state = 'done' AND updated_at < ?", (done_older_than,)
            )
            await tx.execute("DELETE FROM job_runners WHERE seen_at < ?", (runners_older_than,))
        return count


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


__all__ = [
    "STATES",
    "Claimed",
    "Job",
    "JobQueue",
    "NewJob",
    "Outcome",
    "QueueStats",
    "RunnerInfo",
]
