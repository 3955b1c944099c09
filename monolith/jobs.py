"""Background jobs: declare them with ``@job``, schedule them with :func:`schedule`, add them
with :meth:`Jobs.enqueue` (inside the caller's transaction when given ``tx``).

    @job("orders.confirm", max_attempts=5, timeout=30)
    async def confirm(ctx: JobContext[Components]) -> None:
        ...  # ctx.payload, ctx.attempt, ctx.services.db, ctx.services.events

    async with svc.db.transaction() as tx:
        order_id = await insert_order(tx, ...)
        await svc.jobs.enqueue("orders.confirm", {"order_id": order_id}, tx=tx)

A job accepted by ``enqueue`` is in the database: it runs at least once even if processes die,
so a job must be safe to run twice. Payloads are JSON (never pickle: a payload crosses
processes and sits on disk). :class:`Jobs` is the app's component: every process can enqueue
and inspect; a process built with ``run=True`` runs jobs (every such process, unless
``MONOLITH_JOBS_RUNNERS=leader``) and competes in the election,
whose winner runs the scheduler. ``@job(queue="email")`` puts a job in a named queue;
``queue("email", limit=2)`` caps how many of its jobs run at once across every runner.

This module only re-exports; the code lives in :mod:`monolith.jobqueue` (the registry, the
component, the queue backends, the runner, the election and the scheduler).
"""

from monolith.jobqueue.component import STALL_SECONDS, JobContext, Jobs, judge
from monolith.jobqueue.registry import (
    REGISTRY,
    JobFunction,
    JobMetrics,
    JobSpec,
    Registry,
    Schedule,
    job,
    queue,
    runner_id,
    schedule,
)

__all__ = [
    "REGISTRY",
    "STALL_SECONDS",
    "JobContext",
    "JobFunction",
    "JobMetrics",
    "JobSpec",
    "Jobs",
    "Registry",
    "Schedule",
    "job",
    "judge",
    "queue",
    "runner_id",
    "schedule",
]
