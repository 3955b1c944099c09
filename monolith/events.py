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

``publish(channel, event, tx=tx)`` ties an event to a transaction: with the database backend
the event's row is written in that transaction (it exists exactly when the change does); with
Redis it is published once the transaction commits (``tx.on_commit``).

Ids and resume: each event carries the id its backend gave it (:class:`Message`); a client that
reconnects hands back the last one it saw and :meth:`EventHub.replay` gives what it missed,
while the backend keeps it (``MONOLITH_EVENTS_KEEP``).

Who hears what: an event may name its audience (``audience=user_id``): then only that user's
connections and admins receive it. Events on the ``orders`` channel without an audience go to
admins only, so an anonymous client never learns anything about orders. The audience travels
in front of the stored event (``<audience>\n<json>``) and is never sent to clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from monolith.channels import ChannelsBackend, Message, Replay
from monolith.channels.database import DatabaseChannelsBackend
from monolith.database.base import Transaction
from monolith.errors import MonolithError, NotStarted
from monolith.logs import get_logger

#: The channels clients may listen to.
CHANNELS = ("products", "orders")
#: Channels whose events without an audience only admins receive.
PRIVATE = frozenset({"orders"})
_EVERYONE = b"*"
_ADMINS = b""

log = get_logger("monolith.events")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a connection belongs to: a user id (None: anonymous), and whether an admin."""

    user_id: int | None = None
    admin: bool = False

    def may_see(self, audience: bytes) -> bool:
        if audience == _EVERYONE or self.admin:
            return True
        return bool(audience) and self.user_id is not None and audience == b"%d" % self.user_id


ANONYMOUS = Viewer()


@dataclass(frozen=True, slots=True)
class Event:
    """One event as a client receives it: its id and its JSON (no audience)."""

    id: str
    channel: str
    data: bytes


def envelope(channel: str, event: Any, audience: int | None) -> bytes:
    if audience is not None:
        head = b"%d" % audience
    else:
        head = _ADMINS if channel in PRIVATE else _EVERYONE
    return head + b"\n" + _encode(event)


def open_envelope(message: Message, viewer: Viewer) -> Event | None:
    """The event in ``message`` if ``viewer`` may see it."""
    audience, sep, data = message.data.partition(b"\n")
    if not sep:  # published without an envelope (by hand, or before envelopes existed)
        audience = _ADMINS if message.channel in PRIVATE else _EVERYONE
        data = message.data
    if not viewer.may_see(audience):
        return None
    return Event(message.id, message.channel, data)


class Listener:
    """One client's queue of events; ``None`` means the hub is closing."""

    def __init__(self, channels: frozenset[str], backlog: int, viewer: Viewer = ANONYMOUS) -> None:
        self.channels = channels
        self.viewer = viewer
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=backlog)
        self.dropped = 0

    def offer(self, item: Event | None) -> None:
        if self.queue.full():  # a slow client loses its oldest event, not the hub its pace
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def deliver(self, message: Message) -> None:
        if message.channel in self.channels:
            event = open_envelope(message, self.viewer)
            if event is not None:
                self.offer(event)

    async def __aiter__(self) -> AsyncIterator[Event]:
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

    async def publish(
        self,
        channel: str,
        event: Any,
        tx: Transaction | None = None,
        *,
        audience: int | None = None,
    ) -> None:
        """Send ``event`` (JSON-encodable) to every listener of ``channel`` on every worker.

        With ``tx``, the event belongs to that transaction: written in it when pub/sub is the
        database (an error then fails the transaction, like any of its statements), otherwise
        published after it commits. ``audience``: the user id that may receive it (and
        admins); None for everyone (admins only on :data:`PRIVATE` channels).
        """
        data = envelope(channel, event, audience)
        if tx is not None:
            if isinstance(self.backend, DatabaseChannelsBackend):
                await self.backend.publish_in(tx, data, [channel])
            else:
                tx.on_commit(lambda: self._publish_soon(channel, data))
            return
        await self._publish(channel, data)

    async def _publish(self, channel: str, data: bytes) -> None:
        try:
            await self.backend.publish(data, [channel])
        except MonolithError as exc:
            log.warning("event not published", channel=channel, error=str(exc))

    def publish_soon(self, channel: str, event: Any, *, audience: int | None = None) -> None:
        """:meth:`publish` in the background; for ``tx.on_commit`` callbacks and handlers."""
        self._publish_soon(channel, envelope(channel, event, audience))

    def _publish_soon(self, channel: str, data: bytes) -> None:
        if not self._started:
            log.warning("event not published: the hub is not started", channel=channel)
            return
        task = asyncio.get_running_loop().create_task(self._publish(channel, data))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def replay(self, channels: Iterable[str], after: str, viewer: Viewer) -> Replay:
        """What ``viewer`` missed on ``channels`` since the event id ``after`` (see
        :class:`~monolith.channels.Replay`); events it may not see are left out."""
        replay = await self.backend.replay(list(channels), after)  # type: ignore[attr-defined]
        return Replay(
            [m for m in replay.messages if open_envelope(m, viewer) is not None],
            replay.complete,
            replay.head,
        )

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
    async def listen(
        self, channels: Iterable[str] = CHANNELS, viewer: Viewer = ANONYMOUS
    ) -> AsyncIterator[Listener]:
        """A listener for ``channels``; once entered, every later event on them that ``viewer``
        may see reaches it."""
        self._require_started()
        listener = Listener(frozenset(channels), self.backlog, viewer)
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
                async for message in self.backend.stream_messages():  # type: ignore[attr-defined]
                    for listener in list(self._listeners):
                        listener.deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a backend must not silence this worker for good
                log.error("event stream failed; restarting", exc_info=exc)
                await asyncio.sleep(1)
