"""The app's own background jobs and schedules (registered on import by :class:`Jobs`).

- ``ops.ping``: sleeps ``payload["seconds"]`` (default 0) and succeeds; for checking that the
  runner runs (``monolith jobs enqueue ops.ping``) and for load tests.
- ``ops.demo``: a job an admin can trigger to see one go through; logs its payload.
- ``maintenance.cleanup`` (every 5 minutes): calls ``cleanup()`` on every app component that
  has one (the cache, the session store...) and forgets old ``done`` job records.
- ``maintenance.optimize`` (daily): refreshes the query planner's statistics.

Jobs here must be safe to run twice: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Protocol, runtime_checkable

import structlog

from monolith.jobs import JobContext, job, schedule

log = structlog.get_logger("monolith.tasks")

#: How long a succeeded job with a unique key keeps deduplicating that key.
KEEP_DONE_SECONDS = 24 * 3600
#: A runner silent this long is forgotten by ``jobs stats``.
FORGET_RUNNER_SECONDS = 3600


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
    now = time.time()
    pruned = await ctx.jobs.queue.prune(
        done_older_than=now - KEEP_DONE_SECONDS, runners_older_than=now - FORGET_RUNNER_SECONDS
    )
    log.info("pruned done jobs", count=pruned)


@job("maintenance.optimize", max_attempts=2, timeout=1800, concurrency=1)
async def optimize(ctx: JobContext) -> None:
    await ctx.jobs.db.optimize()


schedule("maintenance.cleanup", "maintenance.cleanup", every=300)
schedule("maintenance.optimize", "maintenance.optimize", cron="17 3 * * *")
