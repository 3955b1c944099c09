"""Jobs for ``bench.jobs_scaleout`` (loaded by its runner processes via MONOLITH_JOBS_MODULES).

- ``bench.noop``: does nothing.
- ``bench.io``: waits 20 ms, as a job waiting on a remote service does.
- ``bench.stamp``: appends ``"<id> <time.time()>"`` to ``<data dir>/stamps.log`` when it starts
  (one ``O_APPEND`` write), for pickup latency.
"""

from __future__ import annotations

import asyncio
import os
import time

from monolith.jobs import JobContext, job


@job("bench.noop", max_attempts=1, timeout=None)
async def noop(ctx: JobContext) -> None:
    return None


@job("bench.io", max_attempts=1, timeout=None)
async def io(ctx: JobContext) -> None:
    await asyncio.sleep(0.02)


@job("bench.stamp", max_attempts=1, timeout=None)
async def stamp(ctx: JobContext) -> None:
    line = f"{ctx.id} {time.time()!r}\n".encode()
    fd = os.open(ctx.jobs.data_dir / "stamps.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
