"""Fixtures shared by every suite: fresh databases per run, Redis key prefixes, data dirs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monolith.database.migrate import migrate
from monolith.db import Database, open_database
from tests.services import PG_ADMIN_URL, REDIS_URL, require_postgres, require_redis, unique_name


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    require_postgres()
    name = unique_name("monolith_t")
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis; tests namespace their keys with :func:`redis_prefix`."""
    require_redis()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = unique_name("monolith_test") + ":"
    yield prefix

    async def _cleanup() -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url)
        try:
            async for key in client.scan_iter(match=f"{prefix}*", count=500):
                await client.delete(key)
        finally:
            await client.aclose()

    asyncio.run(_cleanup())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started, migrated database of each backend."""
    database = open_database(db_url)
    await database.start()
    await migrate(database)
    try:
        yield database
    finally:
        await database.stop()


pytest_plugins = ["tests.stores"]
