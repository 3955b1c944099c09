"""Live events over SSE (``GET /api/events``) and WebSocket (``WS /ws/events``).

Both streams start with ``{"type": "hello", "worker": pid}`` (the pid only outside
production), sent once the worker listens: from then on every event published by any worker
reaches the client. Then each event is one JSON object with a ``type`` (``product.created``,
``product.updated``, ``product.deleted``, ``order.confirmed``). ``?channels=products,orders``
picks channels (both by default). SSE sends a comment every ``HEARTBEAT`` seconds so that
proxies keep the connection and a vanished client is noticed. When the worker stops, streams
end (WebSocket close code 1012, "service restart") and clients reconnect to a live worker.

Resume: every SSE event has an ``id:``; a client reconnecting with ``Last-Event-ID`` (browsers'
``EventSource`` sends it by itself) first gets every event it missed, in order, while they are
kept (``MONOLITH_EVENTS_KEEP``), or an ``event: reset`` (``{"type": "reset"}``) when some are
gone: it should reload what it shows. WebSocket messages carry the id in the JSON
(``{"event_id": "...", "type": ...}``; ``id`` stays the product's or order's), and
``?since=ID`` does what ``Last-Event-ID`` does.

Who hears what: order events reach only their owner's connections and admins (a signed-in
admin, or the admin token); anonymous clients get product events only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ControllerRouterHandler

from monolith.events import ANONYMOUS, CHANNELS, Event, EventHub, Listener, Viewer
from monolith.services import Services
from monolith.web.body import UnprocessableEntity
from monolith.web.guards import Connection, bearer_token, current_user, is_admin_token

HEARTBEAT = 15.0
ChannelsParam = Annotated[
    str | None,
    Parameter(max_length=200, description="comma-separated: " + ", ".join(CHANNELS)),
]
SinceParam = Annotated[
    str | None, Parameter(max_length=64, description="resume after this event id")
]
RESET = b'{"type":"reset"}'


async def viewer_of(svc: Services, connection: Connection) -> Viewer:
    """Who is listening: the admin token, a signed-in user (admin or not), or nobody."""
    token = bearer_token(connection)
    if token is not None and is_admin_token(svc.settings, token):
        return Viewer(admin=True)
    user = await current_user(svc, connection)
    if user is None:
        return ANONYMOUS
    return Viewer(user.id, user.role == "admin")


async def catch_up(
    hub: EventHub, names: list[str], since: str | None, viewer: Viewer
) -> tuple[list[Event], str | None, set[str]]:
    """What a resuming client missed: (events, the reset id or None, ids already sent)."""
    if since is None:
        return [], None, set()
    replay = await hub.replay(names, since, viewer)
    if not replay.complete:
        return [], replay.head, set()
    events = [Event(m.id, m.channel, m.data.partition(b"\n")[2]) for m in replay.messages]
    return events, None, {e.id for e in events}


def with_id(event: Event) -> str:
    """The event's JSON with its id first, as ``event_id`` (for WebSocket messages)."""
    body = event.data.strip()
    inner = body[1:-1].strip() if body.startswith(b"{") and body.endswith(b"}") else b""
    head = msgspec.json.encode({"event_id": event.id})[:-1]
    return (head + (b"," + inner if inner else b"") + b"}").decode()


def pick_channels(raw: str | None) -> list[str]:
    if not raw:
        return list(CHANNELS)
    names = list(dict.fromkeys(c.strip() for c in raw.split(",") if c.strip()))
    unknown = [n for n in names if n not in CHANNELS]
    if unknown or not names:
        raise UnprocessableEntity(
            detail=f"channels: unknown channel {unknown[0]!r}; choose from {', '.join(CHANNELS)}"
            if unknown
            else "channels: name at least one channel"
        )
    return names


async def with_heartbeats(listener: Listener, every: float) -> AsyncIterator[Event | None]:
    """The listener's events, and ``None`` after every ``every`` seconds of silence."""
    while True:
        try:
            async with asyncio.timeout(every):
                item = await listener.queue.get()
        except TimeoutError:
            yield None
            continue
        if item is None:
            return
        yield item


def routes(svc: Services) -> list[ControllerRouterHandler]:
    hub = svc.events
    greeting: dict[str, Any] = {"type": "hello"}
    if not svc.settings.production:
        greeting["worker"] = os.getpid()
    hello = msgspec.json.encode(greeting).decode()

    @get("/api/events", summary="Live product and order events (Server-Sent Events)")
    async def sse(
        request: Request[Any, Any, Any], channels: ChannelsParam = None
    ) -> ServerSentEvent:
        names = pick_channels(channels)
        since = request.headers.get("last-event-id") or None
        viewer = await viewer_of(svc, request)
        # Subscribing here, before the response starts, turns a pub/sub outage into a 503.
        await hub.prepare(names)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async with hub.listen(names, viewer) as listener:
                yield ServerSentEventMessage(data=hello)
                missed, reset, sent = await catch_up(hub, names, since, viewer)
                if reset is not None:
                    yield ServerSentEventMessage(data=RESET.decode(), event="reset", id=reset)
                for event in missed:
                    yield ServerSentEventMessage(data=event.data.decode(), id=event.id)
                async for item in with_heartbeats(listener, HEARTBEAT):
                    if item is None:
                        yield ServerSentEventMessage(comment="keep-alive")
                    elif item.id not in sent:
                        yield ServerSentEventMessage(data=item.data.decode(), id=item.id)

        return ServerSentEvent(
            stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @websocket("/ws/events")
    async def ws(
        socket: WebSocket[Any, Any, Any],
        channels: ChannelsParam = None,
        since: SinceParam = None,
    ) -> None:
        names = pick_channels(channels)
        viewer = await viewer_of(svc, socket)
        await hub.prepare(names)
        await socket.accept()
        async with hub.listen(names, viewer) as listener:
            await socket.send_text(hello)
            missed, reset, sent = await catch_up(hub, names, since, viewer)
            if reset is not None:
                await socket.send_text(with_id(Event(reset, "", RESET)))
            for event in missed:
                await socket.send_text(with_id(event))

            async def forward() -> None:
                async for item in listener:
                    if item.id not in sent:
                        await socket.send_text(with_id(item))

            async def until_disconnect() -> None:
                while (await socket.receive())["type"] != "websocket.disconnect":
                    pass

            tasks = [asyncio.create_task(forward()), asyncio.create_task(until_disconnect())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if tasks[0] in done:  # the hub is closing: tell the client to reconnect elsewhere
                with contextlib.suppress(Exception):
                    await socket.close(code=1012, reason="service restart")

    return [sse, ws]
