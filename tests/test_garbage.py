"""A request on the hot paths leaves no reference cycles behind.

Memory a request used is given back by reference counting as the request ends; whatever it
left in a cycle waits for the garbage collector, whose collections then run every few hundred
requests and scan the young objects each time. Measured on a worker under a cached read:
a request's frame held in its own locals left 28 objects in cycles per request, and the
collector's work was ~5 µs of each request's ~40. The requests here go through the whole
app (request context, rate limiter, fast path, Litestar) on the app's own loop: the bench
mix's reads and its order writes.
"""

from __future__ import annotations

import gc
import json
import types
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from monolith.app import create_app
from tests.apphelpers import ADMIN, make_settings

REQUESTS = 50
#: A key in each test request's scope, to know the request's own objects among the garbage.
PROBE = "test_garbage.probe"
PASSWORD = "correct horse battery staple"


class Shop:
    def __init__(self, app: Litestar, client: AsyncTestClient[Litestar], cookie: str) -> None:
        self.app, self.client, self.cookie = app, client, cookie


@pytest.fixture
async def shop(db_url: str, data_dir: Path) -> AsyncIterator[Shop]:
    """The app with a product, and a signed-in user who ordered it once (order 1)."""
    app = create_app(make_settings(data_dir, MONOLITH_DATABASE_URL=db_url))
    async with AsyncTestClient(app=app) as client:
        r = await client.post(
            "/api/products",
            json={"name": "Kept", "price_cents": 100, "stock": 1000},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/api/auth/signup", json={"email": "g@example.com", "password": PASSWORD, "name": "G"}
        )
        assert r.status_code == 201, r.text
        r = await client.post(
            "/api/auth/login", json={"email": "g@example.com", "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        cookie = f"monolith_session={r.cookies['monolith_session']}"
        client.cookies.clear()
        yield Shop(app, client, cookie)


async def _request(app: Litestar, method: str, path: str, cookie: str | None) -> int:
    p, _, q = path.partition("?")
    headers = [(b"host", b"127.0.0.1:8000")]
    body = b""
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    if method == "POST":
        headers.append((b"content-type", b"application/json"))
        body = json.dumps({"items": [{"product_id": 1, "quantity": 1}]}).encode()
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": p, "raw_path": p.encode(), "query_string": q.encode(),
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": headers, "state": {}, PROBE: True,
    }  # fmt: skip
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def _requests(app: Litestar, request: str, cookie: str | None, count: int) -> set[int]:
    method, path = request.split(" ")
    return {await _request(app, method, path, cookie) for _ in range(count)}


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the collector finds unreachable, kept for the test to look at."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


#: The requests, with the status each answers.
REQUEST_LINES = {
    "GET /api/products/1": 200,  # a direct read of the fast path (then a kept copy)
    "GET /api/products?limit=20": 200,  # a cached page of the fast path
    "GET /health/live": 200,  # through Litestar's own pipeline
    "GET /api/products/99999": 404,
    "GET /api/orders/1": 200,  # signed in: a session read, a database read
    "POST /api/orders": 201,  # a write: stock, the order, its job, its event
}


def test_a_request_leaves_nothing_for_the_collector(shop: Shop, saved_garbage: list[Any]) -> None:
    call = shop.client.blocking_portal.call  # on the app's loop
    assert call(_requests, shop.app, "POST /api/orders", shop.cookie, 1) == {201}  # order 1
    left: dict[str, list[tuple[str, int]]] = {}
    # What a request left in a cycle: its scope, or a frame or function of the app's code.
    # (Not every object the collector finds: the app's background tasks leave some of their
    # own, e.g. redis-py's timeouts while the Redis pub/sub listener waits.)
    for request_line, expected in REQUEST_LINES.items():
        cookie = shop.cookie if "orders" in request_line else None
        # Warm: copies kept, statements prepared.
        assert call(_requests, shop.app, request_line, cookie, 5) == {expected}
        gc.collect()
        saved_garbage.clear()
        assert call(_requests, shop.app, request_line, cookie, REQUESTS) == {expected}
        gc.collect()
        ours = [_describe(o) for o in saved_garbage if _of_a_request(o)]
        if ours:
            left[request_line] = Counter(ours).most_common(8)
    assert not left, left


def _of_a_request(o: Any) -> bool:
    if isinstance(o, dict):
        return o.get(PROBE) is True
    if isinstance(o, types.FrameType):
        return "/monolith/" in o.f_code.co_filename
    if isinstance(o, types.FunctionType):
        return str(o.__module__).startswith("monolith")
    return False


def _describe(o: Any) -> str:
    if isinstance(o, dict):
        return f"the scope of {o.get('method')} {o.get('path')}"
    if isinstance(o, types.FrameType):
        return f"frame of {o.f_code.co_qualname}"
    return f"function {o.__qualname__}"
