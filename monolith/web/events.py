"""Live events over SSE (``GET /api/events``) and WebSocket (``WS /ws/events``).

Both streams start with ``{"type": "hello", "worker": pid}`` (the pid only outside
production), sent once the worker listens: from then on every event published by any worker
reaches the client. Then each event is one JSON object with a ``type`` (``product.created``,
``product.updated``, ``product.deleted``, ``order.confirmed``). ``?channels=products,orders``
picks channels (both by default). SSE sends a comment every ``HEARTBEAT`` seconds so that
proxies keep the connection and a vanished client is noticed. When the worker stops, streams
end (WebSocket close code 1012, "service restart") and clients reconnect to a live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, get, websocket
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ControllerRouterHandler

from monolith.events import CHANNELS, Listener
from monolith.services import Services
from monolith.web.body import UnprocessableEntity

HEARTBEAT = 15.0
ChannelsParam = Annotated[
    str | None,
    Parameter(max_length=200, description="comma-separated: " + ", ".join(CHANNELS)),
]


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


async def with_heartbeats(listener: Listener, every: float) -> AsyncIterator[bytes | None]:
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
    async def sse(channels: ChannelsParam = None) -> ServerSentEvent:
        names = pick_channels(channels)
        # Subscribing here, before the response starts, turns a pub/sub outage into a 503.
        await hub.prepare(names)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            async with hub.listen(names) as listener:
                yield ServerSentEventMessage(data=hello)
                async for item in with_heartbeats(listener, HEARTBEAT):
                    if item is None:
                        yield ServerSentEventMessage(comment="keep-alive")
                    else:
                        yield ServerSentEventMessage(data=item.decode())

        return ServerSentEvent(
            stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @websocket("/ws/events")
    async def ws(socket: WebSocket[Any, Any, Any], channels: ChannelsParam = None) -> None:
        names = pick_channels(channels)
        await hub.prepare(names)
        await socket.accept()
        async with hub.listen(names) as listener:
            await socket.send_text(hello)

            async def forward() -> None:
                async for item in listener:
                    await socket.send_text(item.decode())

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
