"""The queue's own housekeeping job, ``jobs.prune``: forget finished jobs past the retention.

Registered when :mod:`monolith.jobqueue.component` is imported; its schedule fires every
``MONOLITH_JOBS_PRUNE_EVERY`` (default 5 minutes) and it deletes ``done`` and ``cancelled``
jobs that ended more than ``MONOLITH_JOBS_KEEP`` ago (default 1 day), as Oban's pruner and
Solid Queue's ``clear_finished_jobs_after`` do, plus runners silent for an hour. ``failed``
jobs stay until an operator retries or discards them. Ids are never reused, so pruning never
lets an old id name a new job.
"""

from __future__ import annotations

import time
from typing import Protocol

import structlog

from monolith.jobqueue.registry import JobsHandle, job

log = structlog.get_logger("monolith.jobs")

PRUNE_JOB = "jobs.prune"
#: A runner silent this long is forgotten by ``jobs stats``.
FORGET_RUNNER_SECONDS = 3600


class PruneContext(Protocol):
    """What the prune job uses of its :class:`~monolith.jobqueue.component.JobContext`."""

    @property
    def jobs(self) -> JobsHandle: ...


@job(PRUNE_JOB, max_attempts=3, timeout=600, concurrency=1)
async def prune(ctx: PruneContext) -> None:
    now = time.time()
    pruned = await ctx.jobs.queue.prune(
        finished_before=now - ctx.jobs.settings.keep_seconds,
        runners_older_than=now - FORGET_RUNNER_SECONDS,
    )
    if pruned:
        log.info("pruned finished jobs", count=pruned, keep=ctx.jobs.settings.keep_seconds)
