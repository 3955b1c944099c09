"""How Litestar's store tests (``test_stores.py`` here, vendored unchanged) build their fixtures:
monolith's memory, disk and Redis stores where Litestar's conftest builds its own.

Every test passes, or is listed below with the reason monolith differs on purpose (also in the
README's store section). ``DIFFERS`` are expected failures, checked strictly: one that starts
to pass fails the run, so the list cannot go stale. ``NOT_APPLICABLE`` tests exercise a class
of Litestar's own against Litestar's docker services, not a store built here.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import time_machine
import valkey.asyncio as aiovalkey

from monolith.store import Store
from monolith.store.disk import DiskStore
from monolith.store.memory import MemoryStore
from monolith.store.redis import RedisStore
from tests.services import redis_delete_prefix, unique_name

#: test id (or name, for every parametrization) -> why monolith differs on purpose.
DIFFERS: dict[str, str] = {
    "test_file_init_subdirectory_negative": (
        "the disk store always creates its directory (mode 0700) and recreates it when deleted;"
        " there is no create_directories=False"
    ),
    "test_file_path": (
        "values live inline in one SQLite file (diskcache), not one file per key: a file named"
        " by a row is never read, so a writable cache dir cannot name files to read"
    ),
    "test_file_store_handle_rename_fail": (
        "patches FileStore's os.replace: the disk store writes no file per key"
    ),
    "test_file_with_namespace": (
        "a namespace is a key prefix (Litestar's RedisStore layout), not a subdirectory"
    ),
    **{
        f"test_file_with_namespace_invalid_namespace_char[{char}]": (
            "namespace names may hold '_', '-' and '.': Litestar's own response cache and"
            " rate limiter ask the store registry for response_cache and rate_limit"
        )
        for char in "_-."
    },
    "test_redis_namespaced_key": (
        "the fixture roots every run in a namespace of its own (one Redis is shared by"
        " concurrent runs), not LITESTAR; the layout itself (namespace:key) is what"
        " test_expires and test_expires_in check on Redis"
    ),
    "test_redis_with_namespace": "as test_redis_namespaced_key: a per-run root, not LITESTAR",
    "test_valkey_namespaced_key": "as test_redis_namespaced_key: a per-run root, not LITESTAR",
    "test_valkey_delete_all": (
        "reaches into ValkeyStore's _valkey client: monolith serves a Valkey server through"
        " redis:// with its Redis store, whose client attribute is Litestar's RedisStore's _redis"
    ),
    "test_valkey_with_namespace": (
        "as test_redis_namespaced_key (a per-run root) and test_valkey_delete_all (_valkey)"
    ),
}

NOT_APPLICABLE: dict[str, str] = {
    "test_redis_store_with_client_shutdown": (
        "runs Litestar's RedisStore.with_client against Litestar's docker Redis at"
        " localhost:6397, not a store built here"
    ),
    "test_valkey_store_with_client_shutdown": (
        "runs Litestar's ValkeyStore.with_client against Litestar's docker Valkey at"
        " localhost:6381, not a store built here"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    # Markers Litestar's suite uses; the plugins behind them (pytest-xdist, pytest-rerunfailures)
    # are not used here, so a flaky test gets no second chance.
    config.addinivalue_line("markers", "flaky(reruns): Litestar's rerun marker (no reruns here)")
    config.addinivalue_line("markers", "xdist_group(name): Litestar's xdist marker (unused here)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        item.add_marker(pytest.mark.profile_independent)  # it picks every backend itself
        name = getattr(item, "originalname", item.name)
        reason = DIFFERS.get(item.name) or DIFFERS.get(name)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"monolith differs: {reason}", strict=True))
        if name in NOT_APPLICABLE:
            item.add_marker(pytest.mark.skip(reason=f"not applicable: {NOT_APPLICABLE[name]}"))


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    """Monolith's Redis store under a namespace of this test's own, deleted afterwards."""
    namespace = unique_name("monolith_litestar")
    store = RedisStore(redis_url, namespace=namespace)
    try:
        yield store
    finally:
        # test_redis_delete_all writes one key outside every namespace, as upstream does.
        await store._redis.delete("test_key")
        await store.stop()
        redis_delete_prefix(namespace)


@pytest.fixture
async def valkey_store(redis_store: RedisStore) -> RedisStore:
    """A Valkey server speaks Redis' protocol: monolith reaches it with its Redis store."""
    return redis_store


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test Redis, for the tests of Litestar's own RedisStore class (they
    write nothing: upstream's fixture flushes the whole server, which this one never does)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def valkey_client(redis_url: str) -> AsyncIterator[Any]:
    client = aiovalkey.Valkey.from_url(redis_url.replace("redis://", "valkey://", 1))
    yield client
    await client.aclose()


@pytest.fixture
def redis_service() -> None:
    """Litestar's docker Redis; the tests that need it are NOT_APPLICABLE."""


@pytest.fixture
def valkey_service() -> None:
    """Litestar's docker Valkey; the tests that need it are NOT_APPLICABLE."""


# Sync fixtures, as upstream's: test_memory_delete_expired asks for them from a running loop.
@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


def _disk(path: Path) -> Iterator[DiskStore]:
    store = DiskStore(path)
    yield store
    asyncio.run(store.stop())  # closes its SQLite connection; nothing in it needs a loop


@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[DiskStore]:
    yield from _disk(tmp_path)


@pytest.fixture
def file_store_create_directories(tmp_path: Path) -> Iterator[DiskStore]:
    yield from _disk(tmp_path / "subdir1" / "subdir2")


@pytest.fixture
def file_store_create_directories_flag_false(tmp_path: Path) -> Iterator[DiskStore]:
    shutil.rmtree(tmp_path, ignore_errors=True)
    yield from _disk(tmp_path.joinpath("subdir"))


@pytest.fixture(
    params=[pytest.param("redis_store", marks=pytest.mark.redis), "memory_store", "file_store"]
)
def store(request: pytest.FixtureRequest) -> Store:
    value: Store = request.getfixturevalue(request.param)
    return value


@pytest.fixture
def frozen_datetime() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(datetime.now(tz=UTC), tick=False) as frozen:
        yield frozen
