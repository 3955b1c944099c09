"""The app's own background jobs and schedules (registered on import by :class:`Jobs`).

- ``ops.ping``: sleeps ``payload["seconds"]`` (default 0) and succeeds; for checking that the
  runner runs (``monolith jobs enqueue ops.ping``) and for load tests.
- ``ops.demo``: a job an admin can trigger to see one go through; logs its payload.
- ``maintenance.cleanup`` (every 5 minutes): calls ``cleanup()`` on every app component that
  has one (the cache, the session store...). Finished jobs are pruned by the queue's own
  ``jobs.prune`` (:mod:`monolith.jobqueue.pruning`).
- ``maintenance.optimize`` (daily): refreshes the query planner's statistics.
- ``orders.confirm``: enqueued with each order, in the transaction that places it; moves the
  order to ``confirmed`` (once, however often it runs), publishes ``order.confirmed`` on the
  ``orders`` channel when this run made that change, and forgets the cached stock of the
  order's products again (so an invalidation the request could not do, with the store down,
  is done once the store is back: the job retries until it is).

Jobs here must be safe to run twice: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Protocol, runtime_checkable

import msgspec
import structlog

from monolith import catalog, orders
from monolith.jobs import JobContext, job, schedule

log = structlog.get_logger("monolith.tasks")


@runtime_checkable
class Cleanable(Protocol):
    """A component with housekeeping to do now and then (expired entries, old files)."""

    async def cleanup(self) -> Any: ...


@job("ops.ping", max_attempts=1, timeout=None)
async def ping(ctx: JobContext) -> None:
    seconds = (ctx.payload or {}).get("seconds", 0) if isinstance(ctx.payload, dict) else 0
    if seconds:
        await asyncio.sleep(float(seconds))


@job("ops.demo", max_attempts=3, timeout=60)
async def demo(ctx: JobContext) -> None:
    log.info("demo job ran", job=ctx.id, attempt=ctx.attempt, payload=ctx.payload)


def _components(services: Any) -> list[Any]:
    if services is None:
        return []
    if dataclasses.is_dataclass(services):
        return [getattr(services, f.name) for f in dataclasses.fields(services)]
    return list(vars(services).values())


@job("maintenance.cleanup", max_attempts=3, timeout=600, concurrency=1)
async def cleanup(ctx: JobContext) -> None:
    for part in _components(ctx.services):
        if isinstance(part, Cleanable):
            result = await part.cleanup()
            log.info("cleaned up", component=type(part).__name__, result=result)


@job("maintenance.optimize", max_attempts=2, timeout=1800, concurrency=1)
async def optimize(ctx: JobContext) -> None:
    await ctx.jobs.db.optimize()


@job(orders.CONFIRM_JOB, max_attempts=10, timeout=30, backoff=1.0)
async def confirm_order(ctx: JobContext) -> None:
    payload = msgspec.convert(ctx.payload, orders.ConfirmPayload)
    async with ctx.jobs.db.transaction() as tx:
        order = await orders.confirm_order(tx, payload.order_id)
    svc = ctx.services
    if svc is None:  # a queue used without the app (tools, tests of the queue alone)
        return
    if order is not None:  # only the run that confirmed it announces it
        await svc.events.publish("orders", orders.order_event(order))
    await catalog.products_changed(svc, payload.product_ids)


schedule("maintenance.cleanup", "maintenance.cleanup", every=300)
schedule("maintenance.optimize", "maintenance.optimize", cron="17 3 * * *")
