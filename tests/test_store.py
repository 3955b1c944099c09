"""The Store conformance suite: every method, on memory, disk and Redis alike."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
import time_machine
from litestar.stores.redis import RedisStore as LitestarRedisStore
from litestar.stores.registry import StoreRegistry

from monolith.errors import ConfigError
from monolith.store import Store, open_store
from monolith.store.lock import Lock, keep, let_go, new_token
from tests.stores import StoreSpec, in_processes

pytestmark = pytest.mark.profile_independent

NOT_UTF8 = b"\xff\xfe\x00\x80binary\xc3("


async def wait_until_gone(store: Store, key: str) -> None:
    """Poll until a key with a short TTL has expired (never asserting how long it took)."""
    for _ in range(200):
        if not await store.exists(key):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key!r} never expired")


async def test_set_then_get_returns_the_same_bytes(store: Store) -> None:
    await store.set("k", NOT_UTF8)
    await store.set("empty", b"")
    assert await store.get("k") == NOT_UTF8
    assert await store.get("empty") == b""


async def test_str_values_are_stored_as_utf8(store: Store) -> None:
    await store.set("k", "héllo")
    assert await store.get("k") == "héllo".encode()


async def test_a_missing_key_reads_as_none(store: Store) -> None:
    assert await store.get("nothing") is None
    assert await store.exists("nothing") is False
    assert await store.expires_in("nothing") is None


@pytest.mark.parametrize("value", [1, 1.5, {"a": 1}, ["x"], None])
async def test_values_that_are_not_bytes_are_refused(store: Store, value: object) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await store.set("k", value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        await store.add("k", value)  # type: ignore[arg-type]


async def test_set_replaces_the_value_and_its_ttl(store: Store) -> None:
    await store.set("k", b"1", expires_in=100)
    await store.set("k", b"2")
    assert await store.get("k") == b"2"
    assert await store.expires_in("k") == -1


async def test_a_key_expires_after_its_ttl(store: Store) -> None:
    await store.set("short", b"v", expires_in=0.2)
    await store.set("long", b"v", expires_in=60)
    assert await store.get("short") == b"v"
    await wait_until_gone(store, "short")
    assert await store.get("short") is None
    assert await store.get("long") == b"v"


async def test_expires_in_counts_whole_seconds_and_says_minus_one_without_expiry(
    store: Store,
) -> None:
    await store.set("k", b"v", expires_in=timedelta(seconds=30))
    await store.set("forever", b"v")
    left = await store.expires_in("k")
    assert left is not None
    assert 28 <= left <= 30
    assert await store.expires_in("forever") == -1
    assert await store.expires_in("absent") is None


async def test_expires_in_truncates_like_litestars_memory_and_file_stores(
    store_spec: StoreSpec,
) -> None:
    # Frozen wall clock: a fresh 10 s key has exactly 10 s left, and 9.5 s later 0.5 s.
    store = store_spec.open()
    try:
        with time_machine.travel(1_000_000, tick=False) as traveller:
            await store.set("k", b"v", expires_in=10)
            if store.scope == "shared":  # Redis keeps its own clock: TTL rounds to nearest
                left = await store.expires_in("k")
                assert left in (9, 10)
                return
            assert await store.expires_in("k") == 10
            traveller.shift(9.5)
            assert await store.expires_in("k") == 0
            assert await store.exists("k")
            traveller.shift(1)
            assert await store.expires_in("k") is None
            assert await store.get("k") is None
    finally:
        await store.delete_all()
        await store.stop()


async def test_time_travel_moves_expiry_on_memory_and_disk(local_spec: StoreSpec) -> None:
    store = local_spec.open()
    with time_machine.travel(1_000_000, tick=False) as traveller:
        await store.set("short", b"v", expires_in=60)
        await store.set("renewed", b"v", expires_in=60)
        await store.set("forever", b"v")
        traveller.shift(50)
        assert await store.get("renewed", renew_for=600) == b"v"
        traveller.shift(20)
        assert await store.delete_expired() == 1
        assert await store.exists("short") is False
        assert await store.get("renewed") == b"v"
        traveller.shift(600)
        assert await store.cleanup() == 1  # the maintenance job's name for it
        assert await store.get("renewed") is None
        assert await store.get("forever") == b"v"
    await store.delete_all()
    await store.stop()


async def test_set_with_keep_ttl_keeps_the_ttl_the_key_has(store: Store) -> None:
    await store.set("k", b"1", expires_in=100)
    await store.set("k", b"2", keep_ttl=True)
    assert await store.get("k") == b"2"
    left = await store.expires_in("k")
    assert left is not None
    assert 95 <= left <= 100
    await store.set("new", b"v", keep_ttl=True)  # absent: stored without expiry
    assert await store.expires_in("new") == -1
    await store.set("forever", b"1")
    await store.set("forever", b"2", keep_ttl=True)
    assert await store.expires_in("forever") == -1
    with pytest.raises(ValueError, match="keep_ttl"):
        await store.set("k", b"3", expires_in=10, keep_ttl=True)
    assert await store.get("k") == b"2"


async def test_get_with_renew_extends_a_ttl_but_never_adds_one(store: Store) -> None:
    await store.set("k", b"v", expires_in=10)
    await store.set("forever", b"v")
    assert await store.get("k", renew_for=600) == b"v"
    assert await store.get("forever", renew_for=600) == b"v"
    left = await store.expires_in("k")
    assert left is not None
    assert 590 <= left <= 600
    assert await store.expires_in("forever") == -1


async def test_renewing_keeps_a_short_lived_key_alive(store: Store) -> None:
    await store.set("k", b"v", expires_in=0.2)
    assert await store.get("k", renew_for=60) == b"v"
    await asyncio.sleep(0.4)
    assert await store.get("k") == b"v"


async def test_delete_removes_a_key_and_ignores_a_missing_one(store: Store) -> None:
    await store.set("k", b"v")
    await store.delete("k")
    await store.delete("never-there")
    assert await store.get("k") is None
    assert await store.exists("k") is False


async def test_namespaces_are_isolated(store: Store) -> None:
    a, b = store.with_namespace("a"), store.with_namespace("b")
    await a.set("k", b"in a")
    await b.set("k", b"in b")
    await store.set("k", b"in root")
    assert await a.get("k") == b"in a"
    assert await b.get("k") == b"in b"
    assert await store.get("k") == b"in root"
    assert a.namespace == f"{store.namespace}_a"  # Litestar's RedisStore names children so


async def test_a_parent_key_never_collides_with_a_child_namespace_key(store: Store) -> None:
    child = store.with_namespace("child")
    await store.set("child/x", b"parent")
    await store.set("child:x", b"parent2")
    await child.set("x", b"child")
    assert await store.get("child/x") == b"parent"
    assert await store.get("child:x") == b"parent2"
    assert await child.get("x") == b"child"


async def test_delete_all_clears_a_namespace_and_its_children_only(store: Store) -> None:
    parent = store.with_namespace("p")
    child = parent.with_namespace("c")
    sibling = store.with_namespace("p2")  # shares the parent's name as a prefix
    for ns in (store, parent, child, sibling):
        await ns.set("k", b"v")
    await child.delete_all()
    assert await child.get("k") is None
    assert await parent.get("k") == b"v"
    await child.set("k", b"v")
    await parent.delete_all()
    assert await parent.get("k") is None
    assert await child.get("k") is None
    assert await sibling.get("k") == b"v"
    assert await store.get("k") == b"v"


def test_namespace_names_are_checked() -> None:
    store = open_store("memory://")
    for bad in ("", "a:b", "a/b", "a*", "a b"):
        with pytest.raises(ValueError, match="namespace"):
            store.with_namespace(bad)


async def test_incr_creates_counts_and_keeps_the_first_ttl(store: Store) -> None:
    assert await store.incr("n", expires_in=30) == 1
    assert await store.incr("n", 5, expires_in=600) == 6
    assert await store.incr("n", -2) == 4
    assert await store.get("n") == b"4"
    left = await store.expires_in("n")
    assert left is not None
    assert left <= 30
    assert await store.incr("forever") == 1
    assert await store.expires_in("forever") == -1


async def test_incr_starts_over_once_the_window_expired(store: Store) -> None:
    assert await store.incr("n", expires_in=0.2) == 1
    assert await store.incr("n") == 2
    await wait_until_gone(store, "n")
    assert await store.incr("n", expires_in=60) == 1


async def test_incr_on_a_value_that_is_not_a_number_is_an_error(store: Store) -> None:
    await store.set("text", NOT_UTF8)
    with pytest.raises(ValueError, match="integer"):
        await store.incr("text")
    assert await store.get("text") == NOT_UTF8


async def test_add_sets_only_an_absent_key(store: Store) -> None:
    assert await store.add("k", b"first", expires_in=60) is True
    assert await store.add("k", b"second") is False
    assert await store.get("k") == b"first"
    await store.delete("k")
    assert await store.add("k", b"third") is True
    assert await store.get("k") == b"third"


async def test_add_succeeds_over_an_expired_key(store: Store) -> None:
    assert await store.add("k", b"a", expires_in=0.2) is True
    await wait_until_gone(store, "k")
    assert await store.add("k", b"b") is True
    assert await store.get("k") == b"b"


async def test_delete_if_deletes_only_while_the_key_holds_the_value(store: Store) -> None:
    await store.set("lock", b"mine", expires_in=60)
    assert await store.delete_if("lock", b"theirs") is False
    assert await store.get("lock") == b"mine"
    assert await store.delete_if("lock", b"mine") is True
    assert await store.exists("lock") is False
    assert await store.delete_if("lock", b"mine") is False  # already gone


async def test_renew_if_extends_only_while_the_key_holds_the_value(store: Store) -> None:
    await store.set("lock", b"mine", expires_in=5)
    assert await store.renew_if("lock", b"theirs", 600) is False
    left = await store.expires_in("lock")
    assert left is not None
    assert left <= 5
    assert await store.renew_if("lock", b"mine", 600) is True
    left = await store.expires_in("lock")
    assert left is not None
    assert 590 <= left <= 600
    assert await store.renew_if("absent", b"mine", 600) is False
    assert await store.exists("absent") is False


async def test_a_lock_outliving_its_ttl_keeps_it_while_held(store: Store) -> None:
    lock = Lock(store, "long", ttl=0.3, wait=0)
    other = Lock(store, "long", ttl=0.3, wait=0)
    async with lock:
        for _ in range(6):  # well past the TTL: the holder's extensions keep it
            await asyncio.sleep(0.1)
            assert await other.acquire(blocking=False) is False
    assert await other.acquire(blocking=False) is True
    assert await other.release() is True


async def test_concurrent_incr_and_add_in_one_process(store: Store) -> None:
    counts = await asyncio.gather(*(store.incr("n") for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))
    won = await asyncio.gather(*(store.add("once", b"%d" % i) for i in range(20)))
    assert won.count(True) == 1


async def test_stats_count_hits_and_misses_across_namespaces(store: Store) -> None:
    before = store.stats()
    await store.set("k", b"v")
    await store.get("k")
    await store.with_namespace("n").get("missing")
    after = store.stats()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)


async def test_a_store_starts_itself_on_first_use_and_after_stop(store_spec: StoreSpec) -> None:
    store = store_spec.open()
    sessions = store.with_namespace("sessions")  # a view made before anything opened
    await sessions.set("k", b"v")
    assert await sessions.get("k") == b"v"
    await store.stop()
    assert await store.with_namespace("sessions").exists("k") is (store.scope != "process")
    async with store:  # Litestar enters the stores it is given, and exits them at shutdown
        await store.set("k", b"root")
        assert await store.get("k") == b"root"
    await store.delete_all()
    await store.stop()


async def test_ping_and_describe(store: Store) -> None:
    await store.ping()
    assert store.scope in ("process", "box", "shared")
    assert "@" not in store.describe()


def test_unknown_urls_are_a_config_error() -> None:
    for url in ("ftp://x", "var/cache", "disk://"):
        with pytest.raises(ConfigError):
            open_store(url)


async def test_a_store_works_as_a_litestar_store(store: Store) -> None:
    registry = StoreRegistry({"sessions": store.with_namespace("sessions")})
    session_store = registry.get("sessions")
    await session_store.set("sid", b"data", expires_in=60)
    assert await store.with_namespace("sessions").get("sid") == b"data"


# -- across processes (memory is per process by design, so these run on disk and Redis) --


async def _incr_many(index: int, spec: StoreSpec, times: int) -> list[int]:
    store = spec.open()
    await store.start()
    try:
        return [await store.incr("shared", expires_in=60) for _ in range(times)]
    finally:
        await store.stop()


async def _add_many(index: int, spec: StoreSpec, keys: int) -> list[int]:
    store = spec.open()
    await store.start()
    try:
        return [k for k in range(keys) if await store.add(f"k{k}", b"%d" % index, expires_in=60)]
    finally:
        await store.stop()


async def _locked_read_modify_write(index: int, spec: StoreSpec, times: int) -> None:
    store = spec.open()
    await store.start()
    try:
        for _ in range(times):
            async with Lock(store, "rmw", ttl=10, wait=60):
                value = int(await store.get("plain") or b"0")
                await asyncio.sleep(0.001)  # invite another process in, if the lock let it
                await store.set("plain", b"%d" % (value + 1))
    finally:
        await store.stop()


def test_incr_counts_every_hit_from_several_processes(shared_spec: StoreSpec) -> None:
    results = in_processes(3, _incr_many, shared_spec, 150)
    seen = sorted(n for result in results for n in result)
    assert seen == list(range(1, 451))


def test_add_lets_exactly_one_process_win_each_key(shared_spec: StoreSpec) -> None:
    results = in_processes(3, _add_many, shared_spec, 60)
    won = sorted(k for result in results for k in result)
    assert won == list(range(60))


async def _lapsing_holder(index: int, spec: StoreSpec) -> bool:
    """Takes the lock, then blocks its event loop past the TTL (so nothing can extend it),
    then releases: True if that release deleted the key."""
    store = spec.open()
    try:
        lock = Lock(store, "lapse", ttl=0.5, wait=30)
        await lock.acquire()
        await store.set("a-holds", b"1", expires_in=60)
        # Block this event loop (so nothing extends the lock, as a computation that holds the
        # loop past the TTL) until the other process has taken the lapsed lock.
        waiter = threading.Thread(target=asyncio.run, args=(_wait_elsewhere(spec, "b-holds"),))
        waiter.start()
        waiter.join()
        released = await lock.release()
        await store.set("a-released", b"1", expires_in=60)
        return released
    finally:
        await store.stop()


async def _next_holder(index: int, spec: StoreSpec) -> bool:
    """Takes the lock once the first holder's lapsed; True if it still holds it after the
    first holder's release."""
    store = spec.open()
    try:
        await _wait_for(store, "a-holds")
        lock = Lock(store, "lapse", ttl=0.5, wait=60)
        await lock.acquire()
        await store.set("b-holds", b"1", expires_in=60)
        await _wait_for(store, "a-released")
        held = await store.get(lock.key) == lock.token
        assert await lock.release() is held
        return held
    finally:
        await store.stop()


async def _wait_for(store: Store, key: str) -> None:
    for _ in range(1200):
        if await store.exists(key):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key!r} never appeared")


async def _wait_elsewhere(spec: StoreSpec, key: str) -> None:
    store = spec.open()
    try:
        await _wait_for(store, key)
    finally:
        await store.stop()


def test_a_lapsed_holder_never_frees_the_next_holders_lock(shared_spec: StoreSpec) -> None:
    first, second = in_processes(2, _one_of_two, shared_spec)
    assert first is False  # its release found another's token and left it
    assert second is True


async def _one_of_two(index: int, spec: StoreSpec) -> bool:
    return await (_lapsing_holder if index == 0 else _next_holder)(index, spec)


def test_lock_serializes_a_read_modify_write_across_processes(shared_spec: StoreSpec) -> None:
    in_processes(3, _locked_read_modify_write, shared_spec, 20)

    async def read() -> bytes | None:
        store = shared_spec.open()
        await store.start()
        try:
            return await store.get("plain")
        finally:
            await store.delete_all()
            await store.stop()

    assert asyncio.run(read()) == b"60"


@pytest.mark.redis
async def test_redis_url_namespace_keeps_deployments_apart(
    redis_url: str, redis_prefix: str
) -> None:
    one = open_store(f"{redis_url}?namespace={redis_prefix}one")
    two = open_store(f"{redis_url}?namespace={redis_prefix}two")
    for store in (one, two):
        await store.start()
    await one.set("k", b"1")
    assert await two.get("k") is None
    assert one.namespace == f"{redis_prefix}one"
    for store in (one, two):
        await store.delete_all()
        await store.stop()


@pytest.mark.redis
async def test_redis_expires_keys_itself_so_delete_expired_has_nothing_to_do(
    redis_url: str, redis_prefix: str
) -> None:
    store = open_store(f"{redis_url}?namespace={redis_prefix}x")
    await store.set("short", b"v", expires_in=0.1)
    await store.set("long", b"v", expires_in=60)
    await wait_until_gone(store, "short")
    assert await store.delete_expired() == 0
    assert await store.get("long") == b"v"
    await store.stop()


@pytest.mark.redis
async def test_redis_reads_what_litestars_redis_store_wrote_and_back(
    redis_url: str, redis_prefix: str
) -> None:
    # A Litestar app's stores: a root RedisStore and the registry's namespaces of it.
    client = aioredis.Redis.from_url(redis_url)
    root = f"{redis_prefix}LITESTAR"
    theirs = StoreRegistry(
        default_factory=LitestarRedisStore(client, namespace=root).with_namespace
    )
    ours_root = open_store(f"{redis_url}?namespace={root}")
    assert isinstance(ours_root, LitestarRedisStore)
    ours = StoreRegistry(default_factory=ours_root.with_namespace)
    try:
        await theirs.get("sessions").set("sid-1", b'{"user": 7}', expires_in=600)
        await theirs.get("response_cache").set("GET/api", b"body")
        assert await ours.get("sessions").get("sid-1") == b'{"user": 7}'
        assert 590 <= (await ours.get("sessions").expires_in("sid-1") or 0) <= 600
        assert await ours.get("response_cache").get("GET/api") == b"body"

        await ours.get("sessions").set("sid-2", b"ours", expires_in=60)
        assert await theirs.get("sessions").get("sid-2") == b"ours"
        await ours.get("sessions").delete_all()
        assert await theirs.get("sessions").get("sid-1") is None
        assert await theirs.get("response_cache").get("GET/api") == b"body"
    finally:
        await ours_root.delete_all()
        await ours_root.stop()
        await client.aclose()


async def test_a_lock_keeper_cancelled_mid_renewal_stops(store: Store) -> None:
    """Releasing a lock cancels its keeper, which may be in the middle of a renewal. On Redis
    the client can turn that cancellation into a connection error; a keeper that took it for
    a store hiccup went on renewing, and the release that waited for it hung (the lock held
    for good): 300 releases, each at a random point of a 10 ms renewal cycle."""
    rng = random.Random(13)
    for _ in range(300):
        token = new_token()
        assert await store.add("kept", token, expires_in=5)
        keeper = keep(store, "kept", token, 0.03)  # renews every 10 ms
        await asyncio.sleep(rng.uniform(0, 0.012))
        released = asyncio.ensure_future(let_go(store, "kept", token, keeper))
        done, _ = await asyncio.wait([released], timeout=2)
        assert done, "the keeper went on after its cancel: the release never returned"
        assert keeper.done()
        assert released.result() is True
        assert not await store.exists("kept")
