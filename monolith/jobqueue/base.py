"""The job queue interface: a ``jobs`` table in the app's database that runners claim with leases.

A queue stores jobs and hands them out; it never runs one (that is :mod:`.runner`) and never
decodes a payload (payloads are JSON text, encoded above it in :mod:`monolith.jobs`). It holds
no connection of its own: every statement goes through the :class:`~monolith.db.Database`, so
an enqueue can join the caller's write transaction and commit (or roll back) with it.

Delivery is at least once. A claim marks jobs ``running`` under a lease for one runner; the
runner's heartbeat extends the lease; a job whose lease ran out (its process died) is handed
out again by the next claim without using up an attempt (a *rescue*), and after
:data:`MAX_RESCUES` of those is kept ``failed`` saying so: a job that keeps killing its runner
stops. Completions and failures are written only while the runner still holds the job, so a
late result from a runner that lost its lease never overwrites the job's newer state.

States, as Oban and Solid Queue have them: ``queued`` -> ``running`` -> ``done`` | ``failed`` |
``cancelled`` (or back to ``queued`` for a retry). Finished jobs stay in the table until
:meth:`JobQueue.prune` removes those older than the retention; ``failed`` ones stay until an
operator retries or discards them. Ids are never reused (an identity on PostgreSQL,
AUTOINCREMENT on SQLite), so an id in a log line names one job for good.

A unique key is held while its job is queued or running, and after success for the job's
``unique_for`` seconds; a failed or cancelled job lets go of it (``unique_hold`` is the held
copy, ``unique_key`` what the job was enqueued with).

Queues: every job belongs to one (``default`` unless its ``@job`` says). A runner takes jobs of
the queues it was given; a paused queue (a row in ``job_queues``, so every process sees it and
it survives restarts) hands out nothing until resumed; a queue or a job name may be capped at
a number of jobs running at once across every runner.

Backends differ only in how a claim locks (SQLite: the database's one write lock, taken by
``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE SKIP LOCKED``, plus an advisory lock while a
claim counts capped jobs) and in how a list of ids is bound.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from monolith.database.base import Database, Row, Transaction
from monolith.jobqueue.coordination import Election, Wakeup

STATES = ("queued", "running", "done", "failed", "cancelled")
#: States a job ends in; retention applies to the first and last.
FINISHED = ("done", "failed", "cancelled")
#: Times a job's runner may die holding it before the job is failed instead of run again.
MAX_RESCUES = 3

_COLUMNS = (
    "id, name, queue, payload, state, priority, run_at, attempts, max_attempts, unique_key, "
    "worker, lease_until, last_error, created_at, updated_at, rescues, cancel_at, finished_at"
)
_INSERT = (
    "INSERT INTO jobs (name, queue, payload, priority, run_at, max_attempts, unique_key, "
    "unique_hold, hold_for, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (unique_hold) DO NOTHING"
)
# A done job whose hold on its unique key is over lets go of it (before an add with that key).
_LET_GO = (
    "UPDATE jobs SET unique_hold = NULL WHERE unique_hold = ? AND state = 'done' "
    "AND finished_at + COALESCE(hold_for, 0) <= ?"
)
# A lease that ran out: its runner died (a live runner renews its leases). The attempt does
# not count; a job cancelled meanwhile ends cancelled; the (MAX_RESCUES + 1)th time, failed.
_GIVE_UP = f"cancel_at IS NULL AND rescues >= {MAX_RESCUES}"
_ENDS = f"(cancel_at IS NOT NULL OR rescues >= {MAX_RESCUES})"
_REAP = f"""
UPDATE jobs SET
    state = CASE WHEN cancel_at IS NOT NULL THEN 'cancelled'
        WHEN {_GIVE_UP} THEN 'failed' ELSE 'queued' END,
    last_error = CASE WHEN {_GIVE_UP} THEN 'its runner stopped without finishing it '
        || CAST(rescues + 1 AS TEXT) || ' times (lease expired); not run again'
        ELSE last_error END,
    unique_hold = CASE WHEN {_ENDS} THEN NULL ELSE unique_hold END,
    finished_at = CASE WHEN {_ENDS} THEN CAST(? AS DOUBLE PRECISION) END,
    attempts = CASE WHEN {_ENDS} THEN attempts ELSE attempts - 1 END,
    rescues = rescues + 1,
    run_at = ?, worker = NULL, lease_until = NULL, updated_at = ?
WHERE state = 'running' AND lease_until < ?
"""


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to add: ``payload`` is JSON text; ``run_at`` is epoch seconds.

    ``unique_for``: seconds a succeeded job keeps holding ``unique_key`` (None: none).
    """

    name: str
    payload: str
    run_at: float
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 5
    unique_key: str | None = None
    unique_for: float | None = None

    def row(self, now: float) -> tuple[Any, ...]:
        return (
            self.name,
            self.queue,
            self.payload,
            self.priority,
            self.run_at,
            self.max_attempts,
            self.unique_key,
            self.unique_key,
            self.unique_for,
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
    #: Times its runner died holding it (each ran it again without using up an attempt).
    rescues: int = 0
    #: When a cancel was asked (a running job is told; others end ``cancelled`` at once).
    cancel_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(*(row[i] for i in range(18)))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: success (``error`` None), a retry at ``retry_at``, failed, or
    ``cancelled`` (the job was told to stop and did, or was stopped)."""

    id: int
    error: str | None = None
    retry_at: float | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim handed out (when the next one falls due: :meth:`JobQueue.next_due`)."""

    jobs: list[Job]


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on jobs running at once across every runner, per job name and per queue."""

    names: Mapping[str, int] = field(default_factory=dict)
    queues: Mapping[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.names or self.queues)

    def covers(self, name: str, queue: str) -> bool:
        return name in self.names or queue in self.queues


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


@dataclass(frozen=True, slots=True)
class QueueState:
    """One named queue: whether it is paused and its jobs per state."""

    name: str
    paused: bool
    counts: dict[str, int]


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
        """Make claims that count running jobs per name or queue run one at a time.

        Nothing to do by default: on SQLite every write transaction already holds the lock.
        """
        return None

    # -- adding ----------------------------------------------------------------------------

    async def add(self, job: NewJob, *, tx: Transaction | None = None) -> int | None:
        """Add one job; its id, or None when its unique key is already held by another job."""
        if tx is None:
            async with self.db.transaction() as own:
                return await self.add(job, tx=own)
        now = time.time()
        if job.unique_key is not None:
            await tx.execute(_LET_GO, (job.unique_key, now))
        await self.wakeup.announce(tx)
        return _int_or_none(await tx.fetch_val(f"{_INSERT} RETURNING id", job.row(now)))

    async def add_many(self, jobs: Iterable[NewJob], *, tx: Transaction | None = None) -> None:
        """Add many jobs in one statement batch (ids are not reported)."""
        if tx is None:
            async with self.db.transaction() as own:
                return await self.add_many(jobs, tx=own)
        now = time.time()
        jobs = list(jobs)
        keys = [(job.unique_key, now) for job in jobs if job.unique_key is not None]
        if keys:
            await tx.execute_many(_LET_GO, keys)
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
        limits: Limits | Mapping[str, int] | None = None,
        reap: bool = True,
    ) -> Claimed:
        """Lease up to ``limit`` due jobs to ``worker``, highest priority then oldest first.

        Only jobs of ``queues`` (None: every queue) that are not paused. ``limits`` caps how
        many jobs of a name or a queue may run at once across every runner: while none of
        those is among the first ``2 * limit`` due jobs, a claim is one statement that leaves
        them out; otherwise counting and claiming happen under one lock so the caps hold.
        ``reap``: first hand back the jobs of runners whose leases ran out (a runner does it
        about once a second).
        """
        caps = limits if isinstance(limits, Limits) else Limits(names=dict(limits or {}))
        async with self.db.transaction() as tx:
            now = time.time()
            if reap:
                await tx.execute(_REAP, (now, now, now, now))
            where, params = ["state = 'queued'", _NOT_PAUSED], []
            if queues is not None:
                cond, values = self._in("queue", list(queues))
                where.append(cond)
                params += values
            capped, capped_params = self._capped(caps)
            due = f"{' AND '.join(where)} AND run_at <= ?"
            # Capped jobs among the head of the line (as far as a counted claim would look):
            # if none, the first due jobs are uncapped ones and one statement claims them.
            if capped and await tx.fetch_val(
                f"SELECT 1 FROM (SELECT name, queue FROM jobs WHERE {due} ORDER BY "
                f"priority DESC, run_at, id LIMIT {int(limit * 2)}) AS head WHERE {capped} "
                "LIMIT 1",
                [*params, now, *capped_params],
            ):
                jobs = await self._claim_capped(tx, worker, limit, lease, now, where, params, caps)
            else:
                rows = await tx.fetch_all(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, "
                    "lease_until = ?, updated_at = ? WHERE id IN (SELECT id FROM jobs WHERE "
                    f"{due}{f' AND NOT {capped}' if capped else ''} ORDER BY priority DESC, "
                    f"run_at, id LIMIT {int(limit)}{self._claim_lock}) RETURNING {_COLUMNS}",
                    [worker, now + lease, now, *params, now, *capped_params],
                )
                jobs = sorted(map(Job.from_row, rows), key=lambda j: (-j.priority, j.run_at, j.id))
        return Claimed(jobs)

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """When the next job of ``queues`` (None: any) falls due, among those not due yet
        (due ones left behind are capped or were skipped: a finish, or the poll, wakes the
        runner for those). A read outside the claim, so claimed jobs start first."""
        where, params = ["state = 'queued'", _NOT_PAUSED, "run_at > ?"], [time.time()]
        if queues is not None:
            cond, values = self._in("queue", list(queues))
            where.append(cond)
            params += values
        value = await self.db.fetch_val(
            f"SELECT MIN(run_at) FROM jobs WHERE {' AND '.join(where)}", params
        )
        return None if value is None else float(value)

    def _capped(self, caps: Limits) -> tuple[str, list[Any]]:
        """The condition "a capped name or queue" and its parameters ("" when nothing is)."""
        conds, params = [], []
        for column, limits in (("name", caps.names), ("queue", caps.queues)):
            if limits:
                cond, values = self._in(column, list(limits))
                conds.append(cond)
                params += values
        return (f"({' OR '.join(conds)})" if conds else ""), params

    async def _claim_capped(
        self,
        tx: Transaction,
        worker: str,
        limit: int,
        lease: float,
        now: float,
        where: list[str],
        params: list[Any],
        caps: Limits,
    ) -> list[Job]:
        """A claim while capped jobs are due: count, pick within the caps, and claim."""
        where, params = list(where), list(params)
        # First without the lock: leave out what is full already, so a full capped queue at
        # the head cannot keep the jobs behind it waiting.
        room = await self._room(tx, caps)
        for (column, value), free in room.items():
            if free <= 0:
                cond, values = self._in(column, [value])
                where.append(f"NOT {cond}")
                params += values
        # Fetch extra candidates, since some may be skipped for their caps.
        candidates = await tx.fetch_all(
            f"SELECT id, name, queue FROM jobs WHERE {' AND '.join(where)} AND run_at <= ? "
            f"ORDER BY priority DESC, run_at, id LIMIT {int(limit * 2)}{self._claim_lock}",
            [*params, now],
        )
        if any(caps.covers(row[1], row[2]) for row in candidates):
            await self._serialize_limited_claims(tx)
            room = await self._room(tx, caps)  # counted again, under the lock
        chosen: list[int] = []
        for row in candidates:
            taken = [k for k in (("name", row[1]), ("queue", row[2])) if k in room]
            if any(room[k] <= 0 for k in taken):
                continue
            for k in taken:
                room[k] -= 1
            chosen.append(int(row[0]))
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        cond, values = self._in("id", chosen)
        rows = await tx.fetch_all(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, "
            f"lease_until = ?, updated_at = ? WHERE {cond} RETURNING {_COLUMNS}",
            [worker, now + lease, now, *values],
        )
        return sorted(map(Job.from_row, rows), key=lambda j: (-j.priority, j.run_at, j.id))

    async def _room(self, tx: Transaction, caps: Limits) -> dict[tuple[str, str], int]:
        """Free slots per capped name and queue: ``{("name" | "queue", value): free}``."""
        room: dict[tuple[str, str], int] = {}
        for column, limits in (("name", caps.names), ("queue", caps.queues)):
            if not limits:
                continue
            cond, values = self._in(column, list(limits))
            rows = await tx.fetch_all(
                f"SELECT {column}, COUNT(*) FROM jobs WHERE state = 'running' AND {cond} "
                f"GROUP BY {column}",
                values,
            )
            running = {row[0]: int(row[1]) for row in rows}
            for value, cap in limits.items():
                room[(column, value)] = cap - running.get(value, 0)
        return room

    async def finish(self, worker: str, outcomes: Sequence[Outcome], *, wake: bool = False) -> None:
        """Record how attempts ended, in one transaction, for jobs ``worker`` still holds.

        A succeeded job stays ``done`` (until pruned), holding its unique key only when it was
        enqueued with ``unique_for``. ``wake``: tell every runner (a capped slot came free).
        """
        if not outcomes:
            return
        now = time.time()
        done = [o.id for o in outcomes if o.error is None and not o.cancelled]
        retry = [
            (o.retry_at, o.error, now, now, o.id, worker)
            for o in outcomes
            if o.error and o.retry_at and not o.cancelled
        ]
        dead = [
            ("cancelled" if o.cancelled else "failed", o.error, now, now, o.id, worker)
            for o in outcomes
            if o.cancelled or (o.error and o.retry_at is None)
        ]
        async with self.db.transaction() as tx:
            if done:
                cond, values = self._in("id", done)
                await tx.execute(
                    "UPDATE jobs SET state = 'done', worker = NULL, lease_until = NULL, "
                    "updated_at = ?, finished_at = ?, unique_hold = CASE WHEN hold_for > 0 "
                    f"THEN unique_hold END WHERE {cond} AND worker = ? AND state = 'running'",
                    [now, now, *values, worker],
                )
            # A job asked to stop (cancel_at) that failed before its runner told it ends
            # cancelled, not retried or failed: the cancel is final.
            if retry:
                await tx.execute_many(
                    "UPDATE jobs SET run_at = ?, last_error = ?, worker = NULL, "
                    "lease_until = NULL, updated_at = ?, "
                    "state = CASE WHEN cancel_at IS NULL THEN 'queued' ELSE 'cancelled' END, "
                    "finished_at = CASE WHEN cancel_at IS NOT NULL "
                    "THEN CAST(? AS DOUBLE PRECISION) END, "
                    "unique_hold = CASE WHEN cancel_at IS NULL THEN unique_hold END "
                    "WHERE id = ? AND worker = ? AND state = 'running'",
                    retry,
                )
            if dead:
                await tx.execute_many(
                    "UPDATE jobs SET state = CASE WHEN cancel_at IS NULL THEN ? "
                    "ELSE 'cancelled' END, last_error = ?, worker = NULL, "
                    "lease_until = NULL, unique_hold = NULL, updated_at = ?, finished_at = ? "
                    "WHERE id = ? AND worker = ? AND state = 'running'",
                    dead,
                )
            if wake:
                await self.wakeup.announce(tx)

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

    async def cancels_for(self, worker: str) -> list[int]:
        """Ids of the jobs ``worker`` runs that were asked to stop (a read; usually none)."""
        rows = await self.db.fetch_all(
            "SELECT id FROM jobs WHERE worker = ? AND state = 'running' AND cancel_at IS NOT NULL",
            (worker,),
        )
        return [int(row[0]) for row in rows]

    async def release(self, worker: str, ids: Sequence[int] | None = None) -> int:
        """Hand back jobs ``worker`` holds (all when ``ids`` is None) to run again soon.

        The attempt does not count: the job did not fail, its worker is stopping. A job
        asked to stop ends ``cancelled`` instead. With ``ids`` None the runner's own record
        goes too.
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
                "UPDATE jobs SET state = CASE WHEN cancel_at IS NULL THEN 'queued' "
                "ELSE 'cancelled' END, finished_at = CASE WHEN cancel_at IS NOT NULL "
                "THEN CAST(? AS DOUBLE PRECISION) END, "
                "unique_hold = CASE WHEN cancel_at IS NULL THEN unique_hold END, "
                "attempts = attempts - 1, worker = NULL, "
                f"lease_until = NULL, run_at = ?, updated_at = ? WHERE {where}",
                [now, now, now, *params],
            )
            if ids is None:
                await tx.execute("DELETE FROM job_runners WHERE id = ?", (worker,))
        return count

    # -- inspecting and repairing ----------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetch_one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else Job.from_row(row)

    async def list(
        self, state: str | None = None, *, limit: int = 100, queue: str | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally of one state and one queue."""
        conds, params = [], []
        if state:
            conds.append("state = ?")
            params.append(state)
        if queue:
            conds.append("queue = ?")
            params.append(queue)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT {int(limit)}", params
        )
        return [Job.from_row(row) for row in rows]

    async def retry(self, job_id: int) -> Job | None:
        """Run a failed, cancelled (or waiting) job again now with fresh attempts; None if it
        cannot be. It takes its unique key back unless another job holds it now."""
        now = time.time()
        return await self._change_one(
            "UPDATE jobs SET state = 'queued', attempts = 0, rescues = 0, cancel_at = NULL, "
            "finished_at = NULL, run_at = ?, updated_at = ?, unique_hold = CASE WHEN "
            "unique_key IS NULL OR EXISTS (SELECT 1 FROM jobs AS other WHERE "
            "other.unique_hold = jobs.unique_key AND other.id <> jobs.id) THEN unique_hold "
            "ELSE unique_key END "
            f"WHERE id = ? AND state IN ('failed', 'cancelled', 'queued') RETURNING {_COLUMNS}",
            (now, now, job_id),
            wake=True,
        )

    async def _change_one(
        self, sql: str, params: Sequence[Any], *, wake: bool = False
    ) -> Job | None:
        """Run one statement that returns the job it changed; that job, or None."""
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(sql, params)
            if wake and row is not None:
                await self.wakeup.announce(tx)
        return None if row is None else Job.from_row(row)

    async def discard(self, job_id: int) -> Job | None:
        """Delete a job that is not running; the deleted job, or None if it cannot be."""
        return await self._change_one(
            f"DELETE FROM jobs WHERE id = ? AND state <> 'running' RETURNING {_COLUMNS}", (job_id,)
        )

    async def cancel(self, job_id: int) -> Job | None:
        """Cancel a queued or running job; the job as it is now, or None if it cannot be.

        A queued one ends ``cancelled`` at once. A running one is marked: its runner tells
        the job (``ctx.cancelled``) within a second and stops it if it does not listen; it
        then ends ``cancelled``. Either way it lets go of its unique key and never retries.
        """
        now = time.time()
        return await self._change_one(
            "UPDATE jobs SET cancel_at = ?, updated_at = ?, "
            "state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, "
            "finished_at = CASE WHEN state <> 'running' THEN CAST(? AS DOUBLE PRECISION) END, "
            "unique_hold = CASE WHEN state = 'running' THEN unique_hold END "
            f"WHERE id = ? AND state IN ('queued', 'running') RETURNING {_COLUMNS}",
            (now, now, now, job_id),
        )

    async def stats(self) -> QueueStats:
        now = time.time()
        counts = await state_counts(self.db)
        oldest = await self.db.fetch_val(
            "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= ? AND NOT "
            "EXISTS (SELECT 1 FROM job_queues WHERE job_queues.name = jobs.queue AND paused)",
            (now,),
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

    # -- queues ----------------------------------------------------------------------------

    async def pause(self, queue: str, paused: bool = True) -> None:
        """Pause (or resume) ``queue`` for every runner, until resumed, across restarts.

        Jobs of a paused queue can still be added; running ones finish; none is handed out.
        """
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO job_queues (name, paused, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, "
                "updated_at = excluded.updated_at",
                (queue, paused, time.time()),
            )
            if not paused:
                await self.wakeup.announce(tx)

    async def queue_states(self) -> Sequence[QueueState]:
        """Every queue that has jobs or was ever paused, by name."""
        rows = await self.db.fetch_all(_counts(per_queue=True))
        paused = {
            row[0]: bool(row[1])
            for row in await self.db.fetch_all("SELECT name, paused FROM job_queues")
        }
        counts: dict[str, dict[str, int]] = {name: dict.fromkeys(STATES, 0) for name in paused}
        for row in rows:
            counts.setdefault(str(row[2]), dict.fromkeys(STATES, 0))[str(row[0])] = int(row[1])
        return [QueueState(name, paused.get(name, False), counts[name]) for name in sorted(counts)]

    async def prune(self, *, finished_before: float, runners_older_than: float) -> int:
        """Forget ``done`` and ``cancelled`` jobs that ended before ``finished_before``, and
        runners silent since ``runners_older_than``. ``failed`` jobs wait for an operator."""
        async with self.db.transaction() as tx:
            count = await tx.execute(
                "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND finished_at < ?",
                (finished_before,),
            )
            await tx.execute("DELETE FROM job_runners WHERE seen_at < ?", (runners_older_than,))
        return count


_NOT_PAUSED = "queue NOT IN (SELECT name FROM job_queues WHERE paused)"


def _counts(per_queue: bool = False) -> str:
    """Jobs per state (and per queue, as a last column), each part read from the partial
    index of its states: queued ones from jobs_claim, running ones from jobs_running, finished
    ones (every one has finished_at) from jobs_finished. No index that a claim could use
    leads with state: the planner would take it for the claim (every queued row read and
    sorted) instead of walking jobs_claim in order."""
    col, by = (", queue", " GROUP BY queue") if per_queue else ("", "")
    return (
        f"SELECT 'queued', COUNT(*){col} FROM jobs WHERE state = 'queued'{by} "
        f"UNION ALL SELECT 'running', COUNT(*){col} FROM jobs WHERE state = 'running'{by} "
        f"UNION ALL SELECT state, COUNT(*){col} FROM jobs WHERE finished_at IS NOT NULL "
        f"AND state NOT IN ('queued', 'running') GROUP BY state{col}"
    )


async def state_counts(db: Database) -> dict[str, int]:
    """Jobs in each state (every state present, 0 when none), from the partial indexes."""
    rows = await db.fetch_all(_counts())
    return dict.fromkeys(STATES, 0) | {str(row[0]): int(row[1]) for row in rows}


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


__all__ = [
    "FINISHED",
    "MAX_RESCUES",
    "STATES",
    "Claimed",
    "Job",
    "JobQueue",
    "Limits",
    "NewJob",
    "Outcome",
    "QueueState",
    "QueueStats",
    "RunnerInfo",
    "state_counts",
]
