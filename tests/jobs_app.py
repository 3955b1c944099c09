"""Jobs for the real-process tests (loaded with ``MONOLITH_JOBS_MODULES=tests.jobs_app``).

``test.record`` sleeps ``payload["sleep"]`` seconds, then appends ``"<id> <attempt> <key> <pid>"``
to ``<data dir>/runs.log`` (one small ``O_APPEND`` write: whole lines even under kill -9), the
data dir and pid being those of the process that ran it.
``TEST_TICK_EVERY=<seconds>`` adds the schedule ``test.tick`` firing ``test.record``.
``test.flaky`` fails (twice, then for good) until ``<data dir>/fixed`` exists.
The jobs after it (``test.span``, ``test.mail``, ``test.listen``, ``test.deaf``, ``test.once``,
``test.crash``) serve the queue-control tests of ``tests/test_jobs_scaleout.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

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


def _append(ctx: JobContext, file: str, line: str) -> None:
    fd = os.open(ctx.jobs.data_dir / file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@job("test.span", queue="limited", max_attempts=1, timeout=60)
async def span(ctx: JobContext) -> None:
    """Sleeps ``payload["sleep"]``; appends ``"<id> <pid> <start> <end>"`` to spans.log."""
    started = time.time()
    await asyncio.sleep(float((ctx.payload or {}).get("sleep", 0)))
    _append(ctx, "spans.log", f"{ctx.id} {os.getpid()} {started!r} {time.time()!r}")


@job("test.mail", queue="mail", max_attempts=1, timeout=60)
async def mail(ctx: JobContext) -> None:
    """A job of the ``mail`` queue: appends ``"<id> <pid>"`` to mail.log."""
    _append(ctx, "mail.log", f"{ctx.id} {os.getpid()}")


@job("test.listen", max_attempts=5, timeout=300)
async def listen(ctx: JobContext) -> None:
    """Runs until cancelled (cooperatively), then appends ``"<id> saw the cancel"``."""
    _append(ctx, "events.log", f"{ctx.id} started")
    await asyncio.wait_for(ctx.cancelled.wait(), 240)
    _append(ctx, "events.log", f"{ctx.id} saw the cancel")


@job("test.deaf", max_attempts=1, timeout=2)
async def deaf(ctx: JobContext) -> None:
    """Never looks at ``ctx.cancelled``; its 2 s timeout ends it."""
    _append(ctx, "events.log", f"{ctx.id} started")
    await asyncio.sleep(120)


@job("test.deaf_slow", max_attempts=3, timeout=8)
async def deaf_slow(ctx: JobContext) -> None:
    """Never looks at ``ctx.cancelled``; its 8 s timeout ends it."""
    _append(ctx, "events.log", f"{ctx.id} started")
    await asyncio.sleep(120)


@job("test.once", max_attempts=1, timeout=60)
async def once(ctx: JobContext) -> None:
    """One attempt; appends ``"<id> <pid> started"`` and, after ``sleep``, ``finished``."""
    _append(ctx, "events.log", f"{ctx.id} {os.getpid()} started")
    await asyncio.sleep(float((ctx.payload or {}).get("sleep", 0)))
    _append(ctx, "events.log", f"{ctx.id} {os.getpid()} finished")


@job("test.crash", max_attempts=1, timeout=60)
async def crash(ctx: JobContext) -> None:
    """Kills the process running it (a job that takes its runner down every time)."""
    _append(ctx, "events.log", f"{ctx.id} {os.getpid()} crashing")
    os.kill(os.getpid(), signal.SIGKILL)
