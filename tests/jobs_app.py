"""Jobs for the real-process tests (loaded with ``MONOLITH_JOBS_MODULES=tests.jobs_app``).

``test.record`` sleeps ``payload["sleep"]`` seconds, then appends ``"<id> <attempt> <key> <pid>"``
to ``<data dir>/runs.log`` (one small ``O_APPEND`` write: whole lines even under kill -9), the
data dir and pid being those of the process that ran it.
``TEST_TICK_EVERY=<seconds>`` adds the schedule ``test.tick`` firing ``test.record``.
``test.flaky`` fails (twice, then for good) until ``<data dir>/fixed`` exists.
"""

from __future__ import annotations

import asyncio
import os

from monolith.jobs import JobContext, job, schedule


@job("test.record", max_attempts=5, timeout=60)
async def record(ctx: JobContext) -> None:
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    await asyncio.sleep(float(payload.get("sleep", 0)))
    line = f"{ctx.id} {ctx.attempt} {ctx.unique_key or '-'} {os.getpid()}\n".encode()
    fd = os.open(ctx.jobs.data_dir / "runs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if os.environ.get("TEST_TICK_EVERY"):
    schedule("test.tick", "test.record", every=float(os.environ["TEST_TICK_EVERY"]))


@job("test.flaky", max_attempts=2, timeout=60, backoff=0.01)
async def flaky(ctx: JobContext) -> None:
    """Fails until ``<data dir>/fixed`` exists: the failure an operator fixes, then retries."""
    if not (ctx.jobs.data_dir / "fixed").exists():
        raise RuntimeError("the remote service is down (create <data dir>/fixed)")
