"""What a second worker process must not break: live events and uploads, on a real server.

One ``monolith serve --workers 2`` (SQLite, the default settings) serves the whole module.
granian's workers share the port with ``SO_REUSEPORT``, so a test cannot pick the worker of a
connection: it opens connections until it has the one it needs, reading which worker served
each from the ``X-Worker-PID`` header (HTTP) or the stream's ``hello`` event (SSE, WebSocket).
A keep-alive client stays on the worker of its one connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect

from tests.images import JPEG, png_bytes
from tests.server import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLANTED = "aaaaaaaaaaaaaaaaaaaaaaaa.png"  # the shape of a key, but outside the media directory
CEILING = 10.0  # a broken server fails a test instead of hanging it
DELIVERY = 1.0  # the promise: an event reaches every worker's clients within a second


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("across") / "var"
    with ServerProcess(data_dir, workers=2) as srv:
        yield srv


async def pinned(
    server: ServerProcess, *, on: int | None = None, avoid: int | None = None
) -> tuple[httpx.AsyncClient, int]:
    """A keep-alive client whose connection is served by worker ``on`` (or not by ``avoid``)."""
    for _ in range(200):
        client = httpx.AsyncClient(base_url=server.url, timeout=CEILING)
        pid = int((await client.get("/health/live")).headers["x-worker-pid"])
        if (on is None or pid == on) and pid != avoid:
            return client, pid
        await client.aclose()
    pytest.fail(f"no connection reached the wanted worker (on={on}, avoid={avoid})")


async def create_product(client: httpx.AsyncClient, name: str, stock: int = 5) -> dict[str, Any]:
    r = await client.post(
        "/api/products", json={"name": name, "price_cents": 1000, "stock": stock}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_request_ids_made_by_either_worker_never_repeat(server: ServerProcess) -> None:
    """A request without an ``X-Request-ID`` gets one made by its worker from the process's
    own random generator (no system call on the hot path). Each worker seeds it anew, so two
    workers started from one parent never hand out the same ids."""
    first, first_pid = await pinned(server)
    second, _ = await pinned(server, avoid=first_pid)
    seen: list[str] = []
    try:
        for _ in range(200):
            for client in (first, second):
                rid = (await client.get("/health/live")).headers["x-request-id"]
                assert len(rid) == 32 and int(rid, 16) >= 0
                seen.append(rid)
    finally:
        await first.aclose()
        await second.aclose()
    assert len(set(seen)) == len(seen) == 400


# -- live events ---------------------------------------------------------------------------


class SSEStream:
    def __init__(self, events: AsyncIterator[Any]) -> None:
        self.events = events

    async def next(self) -> dict[str, Any]:
        return dict(json.loads((await anext(self.events)).data))


async def sse_on_each_worker(
    server: ServerProcess, stack: AsyncExitStack, headers: dict[str, str] | None = None
) -> dict[int, SSEStream]:
    """One SSE stream per worker (as anonymous clients unless ``headers`` say who)."""
    streams: dict[int, SSEStream] = {}
    for _ in range(200):
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.url, timeout=CEILING, headers=headers)
        )
        source = await stack.enter_async_context(aconnect_sse(client, "GET", "/api/events"))
        assert source.response.headers["content-type"].startswith("text/event-stream")
        stream = SSEStream(source.aiter_sse())
        hello = await stream.next()
        assert hello["type"] == "hello"
        assert hello["worker"] == int(source.response.headers["x-worker-pid"])
        streams.setdefault(hello["worker"], stream)
        if len(streams) == server.workers:
            return streams
    pytest.fail(f"SSE connections reached only workers {sorted(streams)}")


async def ws_on_each_worker(
    server: ServerProcess, stack: AsyncExitStack
) -> dict[int, ClientConnection]:
    sockets: dict[int, ClientConnection] = {}
    url = server.url.replace("http://", "ws://") + "/ws/events"
    for _ in range(200):
        ws = await stack.enter_async_context(connect(url, open_timeout=CEILING))
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        sockets.setdefault(hello["worker"], ws)
        if len(sockets) == server.workers:
            return sockets
    pytest.fail(f"WebSocket connections reached only workers {sorted(sockets)}")


async def until(read: Any, wanted: Any) -> tuple[dict[str, Any], float]:
    """The first event for which ``wanted(event)``, and when it arrived (monotonic)."""
    async with asyncio.timeout(CEILING):
        while True:
            event = await read()
            if wanted(event):
                return event, time.monotonic()


async def test_sse_client_on_one_worker_hears_a_write_on_the_other(server: ServerProcess) -> None:
    async with AsyncExitStack() as stack:
        streams = await sse_on_each_worker(server, stack)
        writer, writer_pid = await pinned(server)
        stack.push_async_callback(writer.aclose)
        listener_pid = next(pid for pid in streams if pid != writer_pid)
        sent = time.monotonic()
        product = await create_product(writer, "Heard over SSE")
        for pid in (listener_pid, writer_pid):
            event, at = await until(
                streams[pid].next,
                lambda e: e["type"] == "product.created" and e["id"] == product["id"],
            )
            assert event["product"]["name"] == "Heard over SSE"
            assert at - sent < DELIVERY, f"worker {pid} heard it after {at - sent:.3f}s"


async def test_websocket_client_on_one_worker_hears_a_write_on_the_other(
    server: ServerProcess,
) -> None:
    async with AsyncExitStack() as stack:
        sockets = await ws_on_each_worker(server, stack)
        writer, writer_pid = await pinned(server)
        stack.push_async_callback(writer.aclose)
        listener_pid = next(pid for pid in sockets if pid != writer_pid)
        product = await create_product(writer, "Heard over WebSocket")
        sent = time.monotonic()
        r = await writer.patch(f"/api/products/{product['id']}", json={"stock": 9}, headers=ADMIN)
        assert r.status_code == 200
        for pid in (listener_pid, writer_pid):

            async def read(ws: ClientConnection = sockets[pid]) -> dict[str, Any]:
                return dict(json.loads(await ws.recv()))

            event, at = await until(
                read, lambda e: e["type"] == "product.updated" and e["id"] == product["id"]
            )
            assert event["product"]["stock"] == 9
            assert at - sent < DELIVERY, f"worker {pid} heard it after {at - sent:.3f}s"


async def test_event_streams_can_pick_channels(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=CEILING) as client:
        r = await client.get("/api/events", params={"channels": "products,secrets"})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("channels: unknown channel 'secrets'")
        async with AsyncExitStack() as stack:
            source = await stack.enter_async_context(
                aconnect_sse(client, "GET", "/api/events", params={"channels": "orders"})
            )
            stream = SSEStream(source.aiter_sse())
            assert (await stream.next())["type"] == "hello"


# -- uploads -------------------------------------------------------------------------------


async def upload(
    client: httpx.AsyncClient, product_id: int, data: bytes, filename: str = "photo.png"
) -> httpx.Response:
    return await client.post(
        f"/api/products/{product_id}/image",
        files={"file": (filename, data, "image/png")},
        headers=ADMIN,
    )


async def test_image_uploaded_through_one_worker_is_served_by_the_other(
    server: ServerProcess,
) -> None:
    writer, writer_pid = await pinned(server)
    reader, _ = await pinned(server, avoid=writer_pid)
    try:
        product = await create_product(writer, "Pictured")
        r = await upload(writer, product["id"], JPEG, filename="holiday.png")
        assert r.status_code == 200, r.text
        url = r.json()["image_url"]
        assert url.startswith("/media/")
        assert url.endswith(".jpg")
        served = await reader.get(url)
        assert served.status_code == 200
        assert served.content == JPEG
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (await reader.get(f"/api/products/{product['id']}")).json()["image_url"] == url
        # A new image replaces the old file.
        r = await upload(writer, product["id"], png_bytes())
        assert r.status_code == 200
        assert (await reader.get(url)).status_code == 404
        assert (await reader.get(r.json()["image_url"])).content == png_bytes()
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_uploads_that_are_not_images_or_too_big_are_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=CEILING) as client:
        product = await create_product(client, "Refuses junk")
        r = await upload(client, product["id"], b"#!/bin/sh\necho not an image\n", "evil.png")
        assert r.status_code == 415
        assert r.json() == {"status_code": 415, "detail": "file: not a PNG, JPEG or WebP image"}
        big = png_bytes() + b"\x00" * (5 * 1024 * 1024)
        r = await upload(client, product["id"], big)
        assert r.status_code == 413
        # A body past the limit is refused by its Content-Length, before it is read.
        status, body = raw_request(
            server,
            f"POST /api/products/{product['id']}/image",
            {
                "Authorization": ADMIN["Authorization"],
                "Content-Type": "multipart/form-data; boundary=x",
                "Content-Length": str(7 * 1024 * 1024),
            },
        )
        assert status == 413
        assert json.loads(body)["status_code"] == 413
        r = await client.post(f"/api/products/{product['id']}/image", headers=ADMIN, data={"x": 1})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("file: required")
        r = await client.post(
            f"/api/products/{product['id']}/image", files={"file": ("a.png", png_bytes())}
        )
        assert r.status_code == 401
        r = await upload(client, 999_999, png_bytes())
        assert r.status_code == 404
        assert (await client.get(f"/api/products/{product['id']}")).json()["image_url"] is None


def raw_request(
    server: ServerProcess, request_line: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Send a request head byte for byte (clients normalize ``..`` away); read the answer."""
    head = f"{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=CEILING) as sock:
        sock.sendall((head + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith((b"}", b"0")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/media/../../etc/passwd",
        "/media/..%2F..%2Fetc%2Fpasswd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%252F..%252Fetc%252Fpasswd",
        f"/media/../{PLANTED}",
        f"/media/..%2F{PLANTED}",
        f"/media/%2E%2E%2F{PLANTED}",
        f"/media/{'a' * 20}%2F..%2F..%2F{PLANTED}",
        "/media/../monolith.db",
    ],
)
def test_a_path_in_the_url_reaches_no_file(server: ServerProcess, target: str) -> None:
    (server.data_dir / PLANTED).write_bytes(png_bytes() + b"planted secret")
    status, body = raw_request(server, f"GET {target}")
    assert status in (400, 404)
    assert b"root:" not in body
    assert b"planted secret" not in body
    assert b"SQLite format" not in body


async def test_a_path_as_the_upload_name_reaches_no_file(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=CEILING) as client:
        product = await create_product(client, "Named badly")
        r = await upload(client, product["id"], png_bytes(), filename="../../../../tmp/owned.png")
        assert r.status_code == 200
        key = r.json()["image_url"].removeprefix("/media/")
    assert "owned" not in key
    assert "/" not in key
    media_dir: Path = server.data_dir / "media"
    assert (media_dir / key).read_bytes() == png_bytes()
    assert not any("owned" in p.name for p in server.data_dir.parent.rglob("*"))
    assert not Path("/tmp/owned.png").exists()
