"""What only one backend has to prove: the disk store's safety and self-repair, Redis outages."""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from monolith.errors import CacheUnavailable
from monolith.store import open_store
from monolith.store.disk import DiskStore
from monolith.store.redis import RedisStore
from tests.services import free_port, launch_redis, throwaway_redis

pytestmark = pytest.mark.profile_independent


class _Boom:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


async def test_disk_never_unpickles_a_forged_row(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "cache")
    await store.start()
    await store.set("k", b"v")
    proof = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(proof)))
    with sqlite3.connect(tmp_path / "cache" / "cache.db") as db:
        # MODE_PICKLE = 4: what diskcache would unpickle on read.
        db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (payload, "monolith:k"))
        db.execute(
            "INSERT INTO Cache (key, raw, store_time, access_time, mode, filename, value)"
            " VALUES ('monolith:f', 1, 0, 0, 2, '../../../etc/passwd', NULL)"
        )
    assert await store.get("k") is None
    assert await store.get("f") is None
    await store.set("f", b"overwritten")  # replacing a forged file row deletes no file
    assert not proof.exists()
    assert await store.get("f") == b"overwritten"
    await store.stop()


async def test_disk_directory_is_private(tmp_path: Path) -> None:
    loose = tmp_path / "cache"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # noqa: S103 - the point: a loose directory gets tightened
    store = DiskStore(loose)
    await store.start()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    await store.stop()


async def test_disk_size_limit_evicts_the_oldest_values(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "cache", size_limit_mb=1)
    await store.start()
    blob = os.urandom(64 * 1024)
    for i in range(64):  # 4 MB into a 1 MB cache
        await store.set(f"k{i}", blob)
    assert await store.get("k0") is None
    assert await store.get("k63") == blob
    size = store.stats().size_bytes
    assert size is not None
    assert size < 3 * 1024 * 1024
    await store.stop()


async def test_disk_deleted_directory_costs_misses_and_stays_shared(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    worker_a, worker_b = DiskStore(path), DiskStore(path)
    await worker_a.start()
    await worker_b.start()
    await worker_a.set("k", b"old")
    assert await worker_b.get("k") == b"old"
    shutil.rmtree(path)
    assert await worker_a.get("k") is None
    await worker_a.set("k", b"new")
    # The other process must follow to the new directory, not keep its deleted file.
    assert await worker_b.get("k") == b"new"
    assert await worker_b.incr("n") == 1
    assert await worker_a.incr("n") == 2
    await worker_a.stop()
    await worker_b.stop()


async def test_disk_corrupted_file_costs_misses(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    worker_a, worker_b = DiskStore(path), DiskStore(path)
    await worker_a.start()
    await worker_b.start()
    for i in range(200):
        await worker_a.set(f"k{i}", os.urandom(512))
    db_file = path / "cache.db"
    with open(db_file, "r+b") as f:  # scribble over the header and the first pages
        f.write(os.urandom(64 * 1024))
    for worker in (worker_a, worker_b):
        # Either a miss or (for pages still intact) the old value: never an error.
        await worker.get("k1")
        await worker.get("k150")
    await worker_a.set("fresh", b"1")
    assert await worker_b.get("fresh") == b"1"
    assert await worker_b.incr("n") == 1
    await worker_a.stop()
    await worker_b.stop()


async def test_disk_file_replaced_by_garbage_at_start(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.mkdir()
    (path / "cache.db").write_bytes(b"not a database at all" * 100)
    store = DiskStore(path)
    await store.start()
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
    await store.stop()


# -- Redis going away ------------------------------------------------------------------------


@pytest.fixture(name="throwaway_redis")
def _throwaway_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    with throwaway_redis() as redis:
        yield redis


@pytest.mark.redis
async def test_redis_outage_is_cache_unavailable_and_heals_itself(
    throwaway_redis: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    port, procs = throwaway_redis
    store = open_store(f"redis://127.0.0.1:{port}/0")
    await store.start()
    await store.set("k", b"v")
    assert await store.incr("n") == 1

    procs[-1].kill()
    procs[-1].wait()
    for call in (store.get("k"), store.set("k", b"v"), store.incr("n"), store.ping()):
        with pytest.raises(CacheUnavailable) as caught:
            await call
        assert caught.value.retry_after >= 1

    launch_redis(port, procs)
    # Same store object, no restart of ours: the pool reconnects and scripts reload.
    await store.set("k", b"back")
    assert await store.get("k") == b"back"
    assert await store.incr("n", expires_in=60) == 1
    assert await store.get("k", renew_for=60) == b"back"
    await store.stop()


@pytest.mark.redis
async def test_redis_unreachable_at_start_fails_calls_not_start() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    await store.start()
    with pytest.raises(CacheUnavailable):
        await asyncio.wait_for(store.get("k"), timeout=10)
    await store.stop()


def test_redis_with_client_takes_litestars_arguments() -> None:
    store = RedisStore.with_client(
        "redis://cache.internal", db=2, port=1234, username="u", password="p@ss"
    )
    assert store.namespace == "LITESTAR"
    assert store.describe() == "redis://cache.internal:1234/2 (shared; LITESTAR)"
    assert store._client.url == "redis://u:p%40ss@cache.internal:1234/2"
    assert RedisStore.with_client(namespace="shop").namespace == "shop"
    with pytest.raises(ValueError, match="namespace"):
        RedisStore.with_client(namespace=None)


@pytest.mark.redis
async def test_redis_burst_beyond_the_pool_waits_for_connections(redis_prefix: str) -> None:
    # Three times the pool's connections at once: the ones beyond it wait for a free
    # connection. redis-py's default pool failed them at once ("Too many connections"),
    # which reached clients as 503s under a burst of orders.
    from monolith.store.redis import POOL_SIZE

    store = open_store(f"redis://127.0.0.1:6379/0?namespace={redis_prefix}")
    await store.start()
    try:
        keys = [f"k{i}" for i in range(3 * POOL_SIZE)]
        await asyncio.gather(*(store.set(k, k.encode(), expires_in=60) for k in keys))
        assert await asyncio.gather(*(store.get(k) for k in keys)) == [k.encode() for k in keys]
    finally:
        await store.stop()
