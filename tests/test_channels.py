"""Conformance suite for pub/sub: every ``ChannelsBackend`` we ship behaves the same.

Parametrized over the database backend on SQLite and on PostgreSQL, Redis (under a key prefix
of its own) and the in-memory backend. "Another instance" stands for another worker process:
its own backend object on its own database connections or Redis client. Waits have a generous
ceiling so that a broken backend fails instead of hanging; nothing asserts a duration. Where a
test must show that something is *not* delivered, it publishes a sentinel afterwards and
checks that the sentinel comes next.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from monolith.channels import ChannelsBackend, open_channels, scope, supports_history
from monolith.channels.database import TRIM_BATCH, DatabaseChannelsBackend
from monolith.database.migrate import migrate
from monolith.db import Database, open_database
from monolith.errors import ConfigError

pytestmark = pytest.mark.profile_independent

Events = AsyncGenerator[tuple[str, bytes], None]
Make = Callable[..., Awaitable[ChannelsBackend]]
CEILING = 10.0


SHARED = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every backend runs every test, except that the in-memory one (one process's by design)
    does not run the tests about several instances (those marked ``shared``)."""
    if "target" in metafunc.fixturenames:
        kinds = SHARED if metafunc.definition.get_closest_marker("shared") else [*SHARED, "memory"]
        metafunc.parametrize("target", kinds, indirect=True)


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    """(kind, url, prefix) of one backend; resolved before the event loop runs."""
    kind = request.param
    if kind == "sqlite":
        return kind, f"sqlite:///{tmp_path / 'channels.db'}", ""
    if kind == "postgresql":
        return kind, request.getfixturevalue("fresh_pg_url"), ""
    if kind == "redis":
        return kind, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return kind, "memory://", ""


@pytest.fixture
async def make(target: tuple[str, str, str]) -> AsyncIterator[Make]:
    """Builds started backends of one kind, each as if in its own worker process."""
    kind, url, prefix = target
    backends: list[ChannelsBackend] = []
    databases: list[Database] = []

    async def _make(**options: Any) -> ChannelsBackend:
        backend: ChannelsBackend
        if kind in ("sqlite", "postgresql"):
            db = open_database(url)
            await db.start()
            databases.append(db)
            await migrate(db)
            backend = DatabaseChannelsBackend(db, **options)
        else:
            backend = open_channels(url, None, prefix=prefix)  # type: ignore[arg-type]
        await backend.on_startup()
        backends.append(backend)
        return backend

    yield _make
    for backend in reversed(backends):
        await backend.on_shutdown()
    for db in databases:
        await db.stop()


@pytest.fixture
async def backend(make: Make) -> ChannelsBackend:
    return await make()


async def next_event(events: Events) -> tuple[str, bytes]:
    return await asyncio.wait_for(anext(events), CEILING)


@pytest.mark.parametrize("channels", [["foo"], ["foo", "bar"]])
async def test_subscriber_receives_what_is_published(
    backend: ChannelsBackend, channels: list[str]
) -> None:
    await backend.subscribe(channels)
    await backend.publish(b"something", channels)
    async with aclosing(backend.stream_events()) as events:
        received = {await next_event(events) for _ in channels}
    assert received == {(c, b"something") for c in channels}


@pytest.mark.parametrize("already", [[], ["other"]])
async def test_publish_before_subscribing_is_not_delivered_later(
    backend: ChannelsBackend, already: list[str]
) -> None:
    if already:
        await backend.subscribe(already)
    await backend.publish(b"before", ["foo"])
    await backend.subscribe(["foo"])
    await backend.publish(b"after", ["foo"])
    async with aclosing(backend.stream_events()) as events:
        assert await next_event(events) == ("foo", b"after")


async def test_unsubscribed_channel_stops_delivering(backend: ChannelsBackend) -> None:
    await backend.subscribe(["foo", "sentinel"])
    await backend.publish(b"one", ["foo"])
    async with aclosing(backend.stream_events()) as events:
        assert await next_event(events) == ("foo", b"one")
        await backend.unsubscribe(["foo"])
        await backend.publish(b"two", ["foo"])
        await backend.publish(b"end", ["sentinel"])
        assert await next_event(events) == ("sentinel", b"end")


async def test_unsubscribe_without_subscription(backend: ChannelsBackend) -> None:
    await backend.unsubscribe(["foo"])


async def test_shutdown_with_undelivered_messages_returns(make: Make) -> None:
    backend = await make()
    await backend.subscribe(["foo"])
    await backend.publish(b"left over", ["foo"])
    await asyncio.wait_for(backend.on_shutdown(), CEILING)
    await backend.on_startup()  # the fixture shuts it down again


async def test_a_stream_cancelled_at_any_point_stops(backend: ChannelsBackend) -> None:
    """A worker's shutdown cancels its event stream wherever it is: waiting for a message or
    in the middle of reading one. A stream that took the cancellation for an outage (redis-py
    turned one into a connection error for the store lock's keeper) would retry for good,
    and the shutdown waiting for it would hang. 200 cancels at random points while messages
    flow."""
    await backend.subscribe(["foo"])
    rng = random.Random(17)
    flowing = True

    async def publish() -> None:
        while flowing:
            await backend.publish(b"x", ["foo"])
            await asyncio.sleep(0.001)

    async def consume() -> None:
        async with aclosing(backend.stream_messages()) as stream:  # type: ignore[attr-defined]
            async for _ in stream:
                pass

    publisher = asyncio.create_task(publish())
    try:
        for _ in range(200):
            consumer = asyncio.create_task(consume())
            await asyncio.sleep(rng.uniform(0, 0.01))
            consumer.cancel()
            done, _ = await asyncio.wait([consumer], timeout=CEILING)
            assert done, "the stream went on after its cancel: a shutdown would hang"
            assert consumer.cancelled()
    finally:
        flowing = False
        await publisher


async def test_messages_arrive_in_publish_order(backend: ChannelsBackend) -> None:
    await backend.subscribe(["foo"])
    sent = [str(i).encode() for i in range(50)]
    for message in sent:
        await backend.publish(message, ["foo"])
    async with aclosing(backend.stream_events()) as events:
        got = [(await next_event(events))[1] for _ in sent]
    assert got == sent


@pytest.mark.shared
async def test_event_published_by_another_instance_reaches_subscriber(make: Make) -> None:
    subscriber, publisher = await make(), await make()
    await subscriber.subscribe(["products"])
    async with aclosing(subscriber.stream_events()) as events:
        await publisher.publish(b'{"type": "product.updated"}', ["products"])
        assert await next_event(events) == ("products", b'{"type": "product.updated"}')


@pytest.mark.shared
async def test_concurrent_publishers_lose_and_duplicate_nothing(make: Make) -> None:
    subscriber, first, second = await make(), await make(), await make()
    await subscriber.subscribe(["orders"])

    async def publish_all(publisher: ChannelsBackend, name: str) -> None:
        for i in range(40):
            await publisher.publish(f"{name}{i}".encode(), ["orders"])

    async with aclosing(subscriber.stream_events()) as events:
        await asyncio.gather(publish_all(first, "a"), publish_all(second, "b"))
        got = [(await next_event(events))[1].decode() for _ in range(80)]
    assert sorted(got) == sorted([f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)])
    # Each publisher's own messages keep their order.
    assert [m for m in got if m[0] == "a"] == [f"a{i}" for i in range(40)]


@pytest.mark.shared
async def test_every_instance_hears_one_publish(make: Make) -> None:
    listeners = [await make() for _ in range(3)]
    for listener in listeners:
        await listener.subscribe(["products"])
    await listeners[0].publish(b"hello", ["products"])
    for listener in listeners:
        async with aclosing(listener.stream_events()) as events:
            assert await next_event(events) == ("products", b"hello")


@pytest.mark.parametrize(("limit", "expected"), [(None, 10), (1, 1), (5, 5), (10, 10)])
async def test_history_is_the_latest_messages(
    backend: ChannelsBackend, limit: int | None, expected: int
) -> None:
    sent = [str(i).encode() for i in range(30)]
    for message in sent:
        await backend.publish(message, ["something"])
    if not supports_history(backend):
        with pytest.raises(NotImplementedError):
            await backend.get_history("something", limit)
        return
    assert await backend.get_history("something", limit) == sent[-expected:]
    assert await backend.get_history("other") == []


# -- the database backend --------------------------------------------------------------------


async def test_database_channels_trim_messages_past_retention(db: Database) -> None:
    backend = DatabaseChannelsBackend(db, retention=60, trim_every=0)
    await backend.on_startup()
    try:
        await backend.publish(b"old", ["foo"])
        async with db.transaction() as tx:  # as if published two minutes ago
            await tx.execute("UPDATE channel_messages SET created_at = created_at - 120")
        await backend.publish(b"new", ["foo"])
        rows = await db.fetch_all("SELECT payload FROM channel_messages ORDER BY id")
        assert [bytes(r[0]) for r in rows] == [b"new"]
        assert await backend.get_history("foo") == [b"new"]
    finally:
        await backend.on_shutdown()


async def test_a_trim_deletes_a_bounded_batch_and_the_next_publishes_catch_up(
    db: Database,
) -> None:
    """A trim runs inside a publisher's write transaction, which every other write of the box
    waits for: it deletes at most TRIM_BATCH messages, and the publishes after it trim the
    rest, oldest first, until nothing aged out is left."""
    backend = DatabaseChannelsBackend(db, retention=60, trim_every=3600)
    await backend.on_startup()
    try:
        await backend.publish(b"first", ["foo"])  # trims (nothing yet), then not for an hour
        aged = 2 * TRIM_BATCH + TRIM_BATCH // 2
        async with db.transaction() as tx:
            for _ in range(aged):
                await backend.publish_in(tx, b"old", ["foo"])
        async with db.transaction() as tx:  # as if published two minutes ago
            await tx.execute("UPDATE channel_messages SET created_at = ?", (time.time() - 120,))
        backend._last_trim = 0.0  # a trim is due
        counts = []
        for _ in range(4):
            await backend.publish(b"new", ["foo"])
            counts.append(await db.fetch_val("SELECT COUNT(*) FROM channel_messages"))
        # 1 + aged old rows; each publish adds one new row and deletes at most a batch.
        assert counts == [
            1 + aged + 1 - TRIM_BATCH,
            1 + aged + 2 - 2 * TRIM_BATCH,
            3,  # the last old ones (fewer than a batch) went: only the new rows are left
            4,  # and with nothing more due, trims wait for trim_every again
        ], counts
        assert await backend.get_history("foo") == [b"new"] * 4
    finally:
        await backend.on_shutdown()


async def test_database_channels_history_skips_expired_rows(db: Database) -> None:
    backend = DatabaseChannelsBackend(db, retention=60, trim_every=3600)
    await backend.on_startup()
    try:
        await backend.publish(b"first", ["foo"])  # trims (nothing yet), then not for an hour
        await backend.publish(b"old", ["foo"])
        async with db.transaction() as tx:
            await tx.execute("UPDATE channel_messages SET created_at = ?", (time.time() - 120,))
        await backend.publish(b"new", ["foo"])
        assert await backend.get_history("foo") == [b"new"]
    finally:
        await backend.on_shutdown()


async def test_database_channels_ids_have_no_gaps(db: Database) -> None:
    backend = DatabaseChannelsBackend(db)
    await backend.on_startup()
    try:
        await asyncio.gather(*(backend.publish(b"x", ["a", "b", "a"]) for _ in range(20)))
        ids = [int(r[0]) for r in await db.fetch_all("SELECT id FROM channel_messages ORDER BY id")]
        assert ids == list(range(ids[0], ids[0] + 40))
        assert await db.fetch_val("SELECT last_id FROM channel_head") == ids[-1]
    finally:
        await backend.on_shutdown()


async def test_database_channels_use_before_startup_says_so(db: Database) -> None:
    from monolith.errors import NotStarted

    backend = DatabaseChannelsBackend(db)
    with pytest.raises(NotStarted, match="on_startup"):
        await backend.publish(b"x", ["foo"])


# -- Redis only --------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_channels_live_under_the_prefix(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    backend = open_channels(redis_url, None, prefix=redis_prefix)  # type: ignore[arg-type]
    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub()
    await backend.on_startup()
    try:
        await pubsub.subscribe(f"{redis_prefix}products")
        await backend.publish(b"hello", ["products"])
        message = None
        deadline = time.monotonic() + CEILING
        while message is None and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message is not None
        # The payload is the stream id the message is kept under (for a replay), then the data.
        entry_id, _, data = message["data"].partition(b"\n")
        assert data == b"hello"
        kept = await client.xrange(f"{redis_prefix}events")
        assert [e[0] for e in kept] == [entry_id]
    finally:
        await pubsub.aclose()
        await client.aclose()
        await backend.on_shutdown()


@pytest.mark.redis
async def test_redis_channels_take_their_namespace_from_the_url(
    redis_url: str, redis_prefix: str
) -> None:
    import redis.asyncio as aioredis

    ours = open_channels(f"{redis_url}?namespace={redis_prefix}ours", None)  # type: ignore[arg-type]
    theirs = open_channels(f"{redis_url}?namespace={redis_prefix}theirs", None)  # type: ignore[arg-type]
    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub()
    await ours.on_startup()
    await theirs.on_startup()
    try:
        await pubsub.subscribe(f"{redis_prefix}ours:products")
        await theirs.publish(b"not for us", ["products"])
        await ours.publish(b"ours", ["products"])
        heard = []
        deadline = time.monotonic() + CEILING
        while not heard and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                heard.append(message["data"].partition(b"\n")[2])
        assert heard == [b"ours"]
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    finally:
        await pubsub.aclose()
        await client.aclose()
        await ours.on_shutdown()
        await theirs.on_shutdown()


# -- the factory -------------------------------------------------------------------------------


def test_open_channels_picks_the_backend_by_url(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    backend = open_channels("", db)
    assert isinstance(backend, DatabaseChannelsBackend)
    assert scope(backend) == "box"
    assert scope(open_channels("memory://", db)) == "process"
    assert scope(open_channels("redis://127.0.0.1:6379/0", db)) == "shared"
    with pytest.raises(ConfigError, match="MONOLITH_CHANNELS_URL"):
        open_channels("kafka://broker", db)


def test_importing_channels_does_not_import_drivers() -> None:
    code = "import sys, monolith.channels; print('redis' in sys.modules, 'asyncpg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
