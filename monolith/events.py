"""Live events: one process's fan-out between the pub/sub backend and its connected clients.

Each worker process has one :class:`EventHub`. Writes publish through it (after their commit,
or in their transaction with ``tx=``)
to the channels backend, which carries the event to every worker; each hub reads the
backend's one stream and hands every event to the SSE and WebSocket clients connected to it.
So a client receives events whichever worker it is connected to and whichever worker served
the write.

Why our own fan-out and not Litestar's ``ChannelsPlugin``: the plugin's publish worker dies
on the first backend error (and its shutdown then waits on a queue nobody drains), and it
runs from the app's lifespan rather than as one of our components.

Events are notifications, not data: a publish that fails (pub/sub down) is logged and
dropped, never turned into an error for a write that has already committed; a client too slow
to keep up loses its oldest events rather than holding up the others. Subscriptions to the
backend are held only while some client listens, so an idle worker does not poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec

from monolith.channels import ChannelsBackend
from monolith.db import Transaction
from monolith.errors import MonolithError, NotStarted
from monolith.logs import get_logger

#: The channels clients may listen to.
CHANNELS = ("products", "orders")

log = get_logger("monolith.events")
_encode = msgspec.json.Encoder().encode


class Listener:
    """One client's queue of events (JSON bytes); ``None`` means the hub is closing."""

    def __init__(self, channels: frozenset[str], backlog: int) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=backlog)
        self.dropped = 0

    def offer(self, item: bytes | None) -> None:
        if self.queue.full():  # a slow client loses its oldest event, not the hub its pace
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self.queue.get()) is not None:
            yield item


class EventHub:
    """Publishes events and fans the backend's stream out to this process's listeners."""

    def __init__(self, backend: ChannelsBackend, *, backlog: int = 100) -> None:
        self.backend = backend
        self.backlog = backlog
        self._listeners: set[Listener] = set()
        self._subscribed: set[str] = set()
        self._lock = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self.backend.on_startup()
        self._started = True
        self._pump = asyncio.create_task(self._run_pump(), name="events-pump")

    async def stop(self) -> None:
        if not self._started:
            return
        self.close_listeners()
        if self._pending:  # publishes of writes that committed just before the stop
            await asyncio.wait(self._pending, timeout=5)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        self._started = False
        await self.backend.on_shutdown()

    def close_listeners(self) -> None:
        """End every client's stream (on stop or drain: clients reconnect to a live worker)."""
        for listener in list(self._listeners):
            listener.offer(None)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, channel: str, event: Any, *, tx: Transaction | None = None) -> None:
        """Send ``event`` (JSON-encodable) to every listener of ``channel`` on every worker.

        With ``tx`` (a write transaction on the app's database), the event is part of that
        transaction: on the database channels backend its row is written in it, so it is sent
        if and only if the transaction commits, with no write of its own; a failure to write it
        fails the transaction. Other backends publish it once ``tx`` has committed.
        """
        if tx is not None:
            publish_in = getattr(self.backend, "publish_in", None)
            if publish_in is not None:
                await publish_in(tx, _encode(event), [channel])
            else:
                tx.on_commit(lambda: self.publish_soon(channel, event))
            return
        try:
            await self.backend.publish(_encode(event), [channel])
        except MonolithError as exc:
            log.warning("event not published", channel=channel, error=str(exc))

    def publish_soon(self, channel: str, event: Any) -> None:
        """:meth:`publish` in the background; for ``tx.on_commit`` callbacks and handlers."""
        if not self._started:
            log.warning("event not published: the hub is not started", channel=channel)
            return
        task = asyncio.get_running_loop().create_task(self.publish(channel, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- listening -------------------------------------------------------------------------

    async def prepare(self, channels: Iterable[str]) -> None:
        """Subscribe to ``channels`` now, so a pub/sub outage fails a request before it streams."""
        self._require_started()
        async with self._lock:
            if missing := set(channels) - self._subscribed:
                await self.backend.subscribe(missing)
                self._subscribed |= missing

    def _require_started(self) -> None:
        if not self._started:
            raise NotStarted("EventHub used before start(); the app lifespan starts it")

    @contextlib.asynccontextmanager
    async def listen(self, channels: Iterable[str] = CHANNELS) -> AsyncIterator[Listener]:
        """A listener for ``channels``; once entered, every later event on them reaches it."""
        self._require_started()
        listener = Listener(frozenset(channels), self.backlog)
        self._listeners.add(listener)
        try:
            await self._sync_subscriptions()
            yield listener
        finally:
            self._listeners.discard(listener)
            with contextlib.suppress(MonolithError):
                await self._sync_subscriptions()

    async def _sync_subscriptions(self) -> None:
        """Subscribe to channels someone listens to; unsubscribe from the rest."""
        async with self._lock:
            wanted = set().union(*(listener.channels for listener in self._listeners))
            if extra := self._subscribed - wanted:
                await self.backend.unsubscribe(extra)
                self._subscribed -= extra
            if missing := wanted - self._subscribed:
                await self.backend.subscribe(missing)
                self._subscribed |= missing

    async def _run_pump(self) -> None:
        while True:
            try:
                async for channel, data in self.backend.stream_events():
                    for listener in list(self._listeners):
                        if channel in listener.channels:
                            listener.offer(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a backend must not silence this worker for good
                log.error("event stream failed; restarting", exc_info=exc)
                await asyncio.sleep(1)
