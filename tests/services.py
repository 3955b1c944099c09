"""Reaching the machine's PostgreSQL and Redis (and Caddy, Chromium) from tests.

A suite that needs a service runs when it is reachable and is skipped with a printed reason
otherwise; under ``CI=true`` a missing service is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

PG_ADMIN_URL = os.environ.get(
    "MONOLITH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MONOLITH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(what: str, ok: bool, how: str) -> None:
    """Skip (or fail under CI) when ``what`` is not available."""
    if ok:
        return
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is an error)")
    pytest.skip(message)


def _reachable_url(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return _reachable(parts.hostname or "127.0.0.1", parts.port or default_port)


def reachable_postgres() -> bool:
    return _reachable_url(PG_ADMIN_URL, 5432)


def reachable_redis() -> bool:
    return _reachable_url(REDIS_URL, 6379)


def require_postgres() -> None:
    require("PostgreSQL", reachable_postgres(), f"start it ({PG_ADMIN_URL})")


def require_redis() -> None:
    require("Redis", reachable_redis(), f"start it ({REDIS_URL})")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    require(name, path is not None, f"apt-get install {package}")
    assert path is not None
    return path


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url(database: str) -> str:
    """The URL of ``database`` on the test server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"


def run_async(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async call to completion from sync code, or from inside a running event loop
    (tests build settings in both), on a loop of its own in a thread."""

    async def call() -> Any:
        return await make()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=60)


def pg_admin(sql: str) -> None:
    """Run one statement on the test server's admin connection (CREATE/DROP DATABASE)."""

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_async(run)


def redis_delete_prefix(prefix: str) -> None:
    """Delete every key under ``prefix`` on the test Redis."""

    async def run() -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS_URL)
        try:
            async for key in client.scan_iter(match=f"{prefix}*", count=500):
                await client.delete(key)
        finally:
            await client.aclose()

    run_async(run)


def launch_redis(port: int, procs: list[subprocess.Popen[bytes]], cwd: str | None = None) -> None:
    """Start a redis-server of the test's own on ``port`` (into ``procs``), no persistence;
    ``cwd`` is where it would write files if a test turns persistence on."""
    binary = require_binary("redis-server", "redis-server")
    procs.append(
        subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            cwd=cwd,
        )
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


@contextlib.contextmanager
def throwaway_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own (never the machine's), restartable on its port."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    launch_redis(port, procs)
    yield port, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
