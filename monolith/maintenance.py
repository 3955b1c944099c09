"""The app's housekeeping jobs and schedules (registered when :mod:`monolith.features` is
imported).

- ``ops.ping``: sleeps ``payload["seconds"]`` (default 0) and succeeds; for checking that the
  runner runs (``monolith jobs enqueue ops.ping``) and for load tests.
- ``ops.demo``: a job an admin can trigger to see one go through; logs its payload.
- ``maintenance.cleanup`` (every 5 minutes): calls ``cleanup()`` on every component that has
  one (:meth:`Components.cleanables`: the store...) and forgets ``Idempotency-Key`` records
  past their 24 hours. Finished jobs are pruned by the queue's own ``jobs.prune``
  (:mod:`monolith.jobqueue.pruning`).
- ``maintenance.optimize`` (daily): refreshes the query planner's statistics.

Jobs here must be safe to run twice: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from monolith.jobs import JobContext, job, schedule
from monolith.services import Components
from monolith.web import idempotency

log = structlog.get_logger("monolith.maintenance")


@job("ops.ping", max_attempts=1, timeout=None)
async def ping(ctx: JobContext[Components]) -> None:
    seconds = (ctx.payload or {}).get("seconds", 0) if isinstance(ctx.payload, dict) else 0
    if seconds:
        await asyncio.sleep(float(seconds))


@job("ops.demo", max_attempts=3, timeout=60)
async def demo(ctx: JobContext[Components]) -> None:
    log.info("demo job ran", job=ctx.id, attempt=ctx.attempt, payload=ctx.payload)


@job("maintenance.cleanup", max_attempts=3, timeout=600, concurrency=1)
async def cleanup(ctx: JobContext[Components]) -> None:
    for part in ctx.services.cleanables():
        result = await part.cleanup()
        log.info("cleaned up", component=type(part).__name__, result=result)
    forgotten = await idempotency.prune(ctx.services.db, time.time())
    log.info("pruned idempotency keys", count=forgotten)


@job("maintenance.optimize", max_attempts=2, timeout=1800, concurrency=1)
async def optimize(ctx: JobContext[Components]) -> None:
    await ctx.jobs.db.optimize()


schedule("maintenance.cleanup", "maintenance.cleanup", every=300)
schedule("maintenance.optimize", "maintenance.optimize", cron="17 3 * * *")
