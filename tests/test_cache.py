"""@cached: hits, stable keys, invalidation, stampede protection, and a store that is down."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgspec
import pytest
import time_machine

from monolith.cache import Cache, cached, declaration
from monolith.errors import CacheUnavailable
from monolith.store import Store, open_store
from tests.services import free_port
from tests.stores import StoreSpec, in_processes

pytestmark = pytest.mark.profile_independent


class Item(msgspec.Struct):
    id: int
    name: str


@dataclass
class Owner:
    """Stands for Services: carries the cache, and counts real computations."""

    cache: Cache
    calls: int = 0
    name: str = "first"
    gate: asyncio.Event | None = None


@cached("test-item", ttl=60, strategy="invalidate-on-write")
async def load_item(owner: Owner, item_id: int, suffix: str = "") -> Item | None:
    owner.calls += 1
    name = owner.name  # read the source, then (maybe) stall before storing
    if owner.gate is not None:
        await owner.gate.wait()
    if item_id < 0:
        return None
    return Item(item_id, name + suffix)


@cached("test-page", ttl=60, strategy="ttl-only")
async def load_page(owner: Owner, page: int) -> bytes:
    owner.calls += 1
    return b'{"page":%d,"raw":"\xff"}' % page


@pytest.fixture
def owner(store: Store) -> Owner:
    return Owner(Cache(store.with_namespace("cache")))


async def test_a_second_call_is_served_from_the_store(owner: Owner) -> None:
    assert await load_item(owner, 1) == Item(1, "first")
    owner.name = "changed"
    assert await load_item(owner, 1) == Item(1, "first")
    assert owner.calls == 1
    assert await load_item(owner, -1) is None
    assert await load_item(owner, -1) is None
    assert owner.calls == 2
    stats = owner.cache.stats()["test-item"]
    assert (stats.hits, stats.misses) == (2, 2)


async def test_keys_are_the_same_however_the_arguments_are_passed(owner: Owner) -> None:
    await load_item(owner, 1)
    await load_item(owner, item_id=1)
    await load_item(owner, 1, "")
    assert owner.calls == 1
    await load_item(owner, 1, "x")
    assert owner.calls == 2


async def test_bytes_results_are_stored_as_they_are(owner: Owner) -> None:
    first = await load_page(owner, 2)
    assert await load_page(owner, 2) == first
    assert owner.calls == 1


async def test_invalidate_makes_the_next_call_recompute(owner: Owner) -> None:
    await load_item(owner, 1)
    await load_item(owner, 2)
    owner.name = "second"
    await owner.cache.invalidate("test-item", 1)
    assert await load_item(owner, 1) == Item(1, "second")
    assert await load_item(owner, 2) == Item(2, "first")
    await owner.cache.invalidate_all("test-item")
    assert await load_item(owner, 2) == Item(2, "second")


async def test_invalidation_is_seen_through_another_cache_on_the_same_store(
    store: Store,
) -> None:
    a = Owner(Cache(store.with_namespace("cache")))
    b = Owner(Cache(store.with_namespace("cache")), name="b")
    await load_item(a, 1)
    assert await load_item(b, 1) == Item(1, "first")
    await b.cache.invalidate("test-item", 1)
    a.name = "after"
    assert await load_item(a, 1) == Item(1, "after")


async def test_concurrent_misses_compute_once(owner: Owner) -> None:
    owner.gate = asyncio.Event()
    calls = [asyncio.create_task(load_item(owner, 7)) for _ in range(20)]
    await asyncio.sleep(0.05)
    owner.gate.set()
    results = await asyncio.gather(*calls)
    assert owner.calls == 1
    assert all(r == Item(7, "first") for r in results)
    assert len({id(r) for r in results}) == 20  # each caller decodes its own copy


async def test_a_recompute_racing_a_write_does_not_put_the_old_value_back(owner: Owner) -> None:
    owner.gate = asyncio.Event()
    reader = asyncio.create_task(load_item(owner, 1))  # reads "first" from the source...
    await asyncio.sleep(0.05)
    owner.name = "written"  # ...the write commits...
    await owner.cache.invalidate("test-item", 1)  # ...and invalidates while it computes
    owner.gate.set()
    assert await reader == Item(1, "first")
    owner.gate = None
    assert await load_item(owner, 1) == Item(1, "written")


async def test_a_failing_computation_is_not_cached_and_frees_the_key(owner: Owner) -> None:
    owner.gate = asyncio.Event()
    owner.name = None  # type: ignore[assignment]
    failing = [asyncio.create_task(load_item(owner, 3)) for _ in range(3)]
    await asyncio.sleep(0.02)
    owner.gate.set()
    for task in failing:
        with pytest.raises(TypeError):
            await task
    owner.gate, owner.name = None, "ok"
    assert await load_item(owner, 3) == Item(3, "ok")


async def test_a_store_that_is_down_leaves_the_function_uncached() -> None:
    unreachable = open_store(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    await unreachable.start()
    owner = Owner(Cache(unreachable))
    try:
        assert await load_item(owner, 1) == Item(1, "first")
        assert await load_item(owner, 1) == Item(1, "first")
        assert owner.calls == 2
        with pytest.raises(CacheUnavailable):
            await owner.cache.invalidate("test-item", 1)
    finally:
        await unreachable.stop()


def test_a_prefix_belongs_to_one_function() -> None:
    with pytest.raises(ValueError, match="already used"):

        @cached("test-item", ttl=1, strategy="ttl-only")
        async def other(owner: Owner) -> int:
            return 1


# -- one recompute per key across processes ----------------------------------------------


@dataclass
class SlowOwner:
    cache: Cache
    store: Store


@cached("test-slow", ttl=60, strategy="ttl-only")
async def slow_value(owner: SlowOwner, key: str) -> int:
    await owner.store.incr("computations")
    await asyncio.sleep(0.3)
    return 42


async def _read_slow(index: int, spec: StoreSpec, start_at: float) -> int:
    store = spec.open()
    await store.start()
    try:
        owner = SlowOwner(Cache(store.with_namespace("cache")), store)
        await asyncio.sleep(max(0.0, start_at - asyncio.get_running_loop().time()))
        results = await asyncio.gather(*(slow_value(owner, "hot") for _ in range(5)))
        assert results == [42] * 5
        return int(await store.get("computations") or b"0")
    finally:
        await store.stop()


def test_a_hot_key_is_recomputed_once_across_processes(shared_spec: StoreSpec) -> None:
    # Processes start at different moments; each waits until a shared instant, then all ask.
    start_at = time.monotonic() + 4.0
    counts = in_processes(3, _read_slow, shared_spec, start_at)
    assert max(counts) == 1


async def test_a_cheap_read_does_not_wait_for_another_processs_fill_lock(store: Store) -> None:
    # Another process holds the fill lock of the entry's next generation and never stores a
    # value. A function this process computed in well under SHARED_FILL_ABOVE computes again
    # at once (one computation per process is cheaper than the lock's writes and polling)
    # and leaves the other's lock alone; its value is stored for the next reader.
    owner = Owner(Cache(store.with_namespace("cache"), lock_ttl=30))
    assert await load_item(owner, 3) == Item(3, "first")
    await owner.cache.invalidate("test-item", 3)
    key = declaration("test-item").key((3,), {})
    root = store.with_namespace("cache")
    token = await root.tokens(root.generation_keys(("test-item", f"test-item/{key}")))
    space = root.with_namespace("test-item")
    lock = f"{token.hex()}/{key}#fill"
    assert await space.add(lock, b"other-process", expires_in=30)
    owner.name = "changed"
    assert await asyncio.wait_for(load_item(owner, 3), 5) == Item(3, "changed")
    assert owner.calls == 2
    assert await space.get(lock) == b"other-process"
    other = Owner(Cache(store.with_namespace("cache")))
    assert await load_item(other, 3) == Item(3, "changed")
    assert other.calls == 0


@cached("test-body", ttl=60, strategy="invalidate-on-write")
async def load_body(owner: Owner, item_id: int) -> bytes | None:
    owner.calls += 1
    return None if item_id < 0 else b"\xff raw %d" % item_id


async def test_optional_bytes_results_keep_none_apart_from_empty(owner: Owner) -> None:
    for _ in range(2):
        assert await load_body(owner, 1) == b"\xff raw 1"
        assert await load_body(owner, -1) is None
    assert owner.calls == 2


# -- a fill slower than its lock's TTL, across processes ---------------------------------


@cached("test-slower-than-lock", ttl=60, strategy="ttl-only")
async def slower_than_lock(owner: SlowOwner, key: str) -> int:
    running = await owner.store.incr("running")
    await owner.store.incr("computations")
    if running > 1:
        await owner.store.incr("overlaps")
    await asyncio.sleep(1.5)  # three times the fill lock's TTL
    await owner.store.incr("running", -1)
    return 7


async def _read_slower_than_lock(index: int, spec: StoreSpec, start_at: float) -> list[int]:
    store = spec.open()
    try:
        owner = SlowOwner(Cache(store.with_namespace("cache"), lock_ttl=0.5), store)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = await asyncio.gather(*(slower_than_lock(owner, "hot") for _ in range(3)))
        assert results == [7] * 3
        return [int(await store.get(k) or b"0") for k in ("computations", "overlaps")]
    finally:
        await store.stop()


def test_a_fill_slower_than_its_lock_runs_once_and_never_twice_at_once(
    shared_spec: StoreSpec,
) -> None:
    # The holder extends its fill lock while it computes, so the others keep waiting for its
    # value instead of taking the lock when the first TTL runs out.
    start_at = time.time() + 4.0
    results = in_processes(2, _read_slower_than_lock, shared_spec, start_at)
    assert [computations for computations, _ in results] == [1, 1]
    assert [overlaps for _, overlaps in results] == [0, 0]


# -- early recomputation (XFetch) ---------------------------------------------------------


@dataclass
class EarlyOwner:
    cache: Cache
    calls: int = 0


@cached("test-early", ttl=60, strategy="ttl-only", beta=1.0)
async def early_value(owner: EarlyOwner, key: str) -> int:
    owner.calls += 1
    await asyncio.sleep(0.05)  # what the computation costs decides how early it recomputes
    return owner.calls


@cached("test-eager", ttl=60, strategy="ttl-only", beta=1e12)
async def eager_value(owner: EarlyOwner, key: str) -> int:
    owner.calls += 1
    await asyncio.sleep(0.01)
    return owner.calls


async def test_early_recomputation_waits_until_expiry_nears(local_spec: StoreSpec) -> None:
    store = local_spec.open()
    owner = EarlyOwner(Cache(store.with_namespace("cache")))
    try:
        with time_machine.travel(1_000_000, tick=True) as traveller:
            assert await early_value(owner, "k") == 1
            # Far from expiry the chance is e^(-59.9 / 0.05) per read: never.
            for _ in range(50):
                assert await early_value(owner, "k") == 1
            # 0.01 s before expiry, a read recomputes with a chance near 0.8: one of twenty does.
            traveller.shift(59.99 - 0.05)
            values = [await early_value(owner, "k") for _ in range(20)]
            assert values[-1] == 2
            assert owner.calls == 2  # once recomputed, the new entry is far from expiry again
    finally:
        await store.delete_all()
        await store.stop()


async def test_early_recomputation_runs_once_while_others_get_the_cached_value(
    store: Store,
) -> None:
    owner = EarlyOwner(Cache(store.with_namespace("cache")))
    assert await eager_value(owner, "k") == 1
    # beta is huge, so every read wants to recompute; one takes the fill lock, the others
    # are answered from the store meanwhile.
    results = await asyncio.gather(*(eager_value(owner, "k") for _ in range(10)))
    assert owner.calls == 2
    assert sorted(results) == [1] * 9 + [2]
    assert await store.with_namespace("cache").with_namespace("test-eager").exists('["k"]')


async def test_plain_entries_carry_no_header_and_are_never_recomputed_early(
    owner: Owner,
) -> None:
    await load_page(owner, 1)
    stored = await owner.cache.store.with_namespace("test-page").get("[1]")
    assert stored == b'{"page":1,"raw":"\xff"}'
    for _ in range(20):
        await load_page(owner, 1)
    assert owner.calls == 1
