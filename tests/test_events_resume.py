"""Live events that resume, on every backend: ids, replay after an id, "reset" when gone,
events written in the caller's transaction, and readers that run no query while idle.

"Another instance" is another backend object on its own connections, as in
tests/test_channels.py (whose fixtures this module shares).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import pytest

from monolith.channels import ChannelsBackend, open_channels, scope
from monolith.channels.database import DatabaseChannelsBackend
from monolith.database.migrate import migrate
from monolith.db import Database, open_database
from monolith.errors import MonolithError
from monolith.events import EventHub, Viewer
from tests.test_channels import CEILING, Make, backend, make, pytest_generate_tests, target

__all__ = ["backend", "make", "pytest_generate_tests", "target"]


@pytest.fixture
async def on_db(db_url: str) -> AsyncIterator[Callable[[], Awaitable[DatabaseChannelsBackend]]]:
    """Builds started pub/sub backends on one database (SQLite, then PostgreSQL), each as the
    app builds it (open_channels), as if in its own process."""
    made: list[tuple[DatabaseChannelsBackend, Database]] = []

    async def _make() -> DatabaseChannelsBackend:
        db = open_database(db_url)
        await db.start()
        await migrate(db)
        backend = open_channels("", db)
        assert isinstance(backend, DatabaseChannelsBackend)
        await backend.on_startup()
        made.append((backend, db))
        return backend

    yield _make
    for made_backend, db in reversed(made):
        await made_backend.on_shutdown()
        await db.stop()


pytestmark = pytest.mark.profile_independent
OnDb = Callable[[], Awaitable[DatabaseChannelsBackend]]


async def ids_of(backend: Any, count: int) -> list[str]:
    found = []
    async with aclosing(backend.stream_messages()) as messages:
        for _ in range(count):
            found.append((await asyncio.wait_for(anext(messages), CEILING)).id)
    return found


async def test_replay_gives_exactly_what_came_after_an_id(make: Make) -> None:
    subscriber = await make()
    await subscriber.subscribe(["products"])
    await subscriber.publish(b"seen", ["products"])
    (last_seen,) = await ids_of(subscriber, 1)
    # 20 events while the client is away, on two channels, some from another instance.
    other = subscriber if scope(subscriber) == "process" else await make()
    sent = []
    for i in range(20):
        publisher = other if i % 2 else subscriber
        await publisher.publish(f"p{i}".encode(), ["products"])
        await publisher.publish(f"o{i}".encode(), ["orders"])
        sent.append(f"p{i}".encode())
    replay = await subscriber.replay(["products"], last_seen)  # type: ignore[attr-defined]
    assert replay.complete
    assert [m.data for m in replay.messages] == sent
    assert all(m.channel == "products" for m in replay.messages)
    assert replay.head != last_seen


async def test_replay_after_an_unknown_id_says_start_over(backend: ChannelsBackend) -> None:
    await backend.publish(b"x", ["products"])
    for after in ("nonsense", "999999999", "99999999999999-0"):
        replay = await backend.replay(["products"], after)  # type: ignore[attr-defined]
        assert not replay.complete and replay.messages == []
        assert replay.head


async def test_database_replay_after_trimmed_messages_says_start_over(on_db: OnDb) -> None:
    backend = await on_db()
    backend.retention, backend.trim_every = 60, 0
    await backend.publish(b"old", ["products"])
    await backend.publish(b"older", ["products"])
    first = await backend.replay(["products"], "0")
    assert [m.data for m in first.messages] == [b"old", b"older"]
    async with backend.db.transaction() as tx:  # as if published two minutes ago
        await tx.execute("UPDATE channel_messages SET created_at = created_at - 120")
    await backend.publish(b"new", ["products"])
    assert not (await backend.replay(["products"], "0")).complete
    after_trim = await backend.replay(["products"], first.messages[-1].id)
    assert after_trim.complete and [m.data for m in after_trim.messages] == [b"new"]


async def test_event_in_a_transaction_exists_only_if_it_commits(on_db: OnDb) -> None:
    backend = await on_db()
    hub = EventHub(backend)
    await hub.start()
    try:
        async with hub.listen(["orders"], Viewer(admin=True)) as listener:
            with pytest.raises(MonolithError):
                async with backend.db.transaction() as tx:
                    await hub.publish("orders", {"type": "lost"}, tx)
                    raise MonolithError("the change failed")
            async with backend.db.transaction() as tx:
                await hub.publish("orders", {"type": "kept"}, tx)
            event = await asyncio.wait_for(listener.queue.get(), CEILING)
            assert event is not None and b'"kept"' in event.data
        rows = await backend.db.fetch_all("SELECT payload FROM channel_messages")
        assert [b"lost" in bytes(r[0]) for r in rows] == [False]
    finally:
        await hub.stop()


async def test_idle_reader_runs_no_query_then_hears_another_instance(on_db: OnDb) -> None:
    reader, publisher = await on_db(), await on_db()
    queries: list[str] = []
    reader.db.observer = lambda sql, seconds, rows: queries.append(sql)
    await reader.subscribe(["products"])
    messages = reader.stream_messages()
    pending = asyncio.ensure_future(anext(messages))
    await _settled(queries)
    idle_from = len(queries)
    window = time.monotonic() + 1.0  # ten poll intervals of the SQLite reader
    while time.monotonic() < window:
        await asyncio.sleep(0.05)
    assert queries[idle_from:] == [], "an idle reader queried the database"
    await publisher.publish(b"wake", ["products"])
    message = await asyncio.wait_for(pending, CEILING)
    assert message.data == b"wake"
    await messages.aclose()


async def _settled(queries: list[str]) -> None:
    """Until the reader's first reads are done: no new statement for a while."""
    deadline = time.monotonic() + CEILING
    seen = -1
    while len(queries) != seen:
        assert time.monotonic() < deadline
        seen = len(queries)
        await asyncio.sleep(0.3)
