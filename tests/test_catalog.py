"""The catalog routes, once on SQLite and once on PostgreSQL, through the same app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from monolith.app import create_app
from monolith.shop.catalog import model as catalog
from monolith.web.fastpath import FastPath
from tests.apphelpers import ADMIN, app_client, behind_its_back, make_settings


@pytest.fixture
async def client(db_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    settings = make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)
    async with app_client(settings) as c:
        r = await c.get("/health/ready")
        assert r.status_code == 200, r.text
        yield c


async def _seed(client: AsyncTestClient, n: int) -> list[int]:
    ids = []
    for i in range(n):
        r = await client.post(
            "/api/products",
            json={"name": f"Item {i}", "price_cents": 100 + i, "stock": i},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def test_create_get_patch_delete(client: AsyncTestClient) -> None:
    r = await client.post(
        "/api/products",
        json={"name": "Lamp", "description": "bright", "price_cents": 1999, "stock": 3},
        headers=ADMIN,
    )
    assert r.status_code == 201
    product = r.json()
    assert product["name"] == "Lamp" and product["stock"] == 3 and product["image_url"] is None

    r = await client.get(f"/api/products/{product['id']}")
    assert r.status_code == 200 and r.json() == product

    r = await client.patch(
        f"/api/products/{product['id']}", json={"price_cents": 1500}, headers=ADMIN
    )
    assert r.status_code == 200
    assert r.json()["price_cents"] == 1500 and r.json()["name"] == "Lamp"
    assert (await client.get(f"/api/products/{product['id']}")).json()["price_cents"] == 1500

    r = await client.delete(f"/api/products/{product['id']}", headers=ADMIN)
    assert r.status_code == 204
    r = await client.get(f"/api/products/{product['id']}")
    assert r.status_code == 404
    assert r.json() == {"status_code": 404, "detail": f"product {product['id']} not found"}


async def test_keyset_pagination_walks_every_product_once(client: AsyncTestClient) -> None:
    ids = await _seed(client, 12)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "5"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/products", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


async def test_public_reads_are_cacheable_with_etag_and_304(client: AsyncTestClient) -> None:
    [pid] = await _seed(client, 1)
    for path in (f"/api/products/{pid}", "/api/products"):
        r = await client.get(path)
        assert r.headers["cache-control"] == "public, max-age=60"
        etag = r.headers["etag"]
        r2 = await client.get(path, headers={"If-None-Match": etag})
        assert r2.status_code == 304
        assert r2.content == b""
        r3 = await client.get(path, headers={"If-None-Match": '"something-else"'})
        assert r3.status_code == 200
    # A change makes a new ETag, so the client's copy is no longer "not modified".
    await client.patch(f"/api/products/{pid}", json={"stock": 99}, headers=ADMIN)
    r = await client.get(f"/api/products/{pid}", headers={"If-None-Match": etag})
    assert r.status_code == 200


async def test_writes_need_the_admin(client: AsyncTestClient) -> None:
    body = {"name": "x", "price_cents": 1}
    r = await client.post("/api/products", json=body)
    assert r.status_code == 401
    r = await client.post("/api/products", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    assert (await client.get("/api/products")).json()["items"] == []


async def test_seed_demo_loads_a_hundred_products_once(
    client: AsyncTestClient, db_url: str
) -> None:
    from monolith.db import open_database

    db = open_database(db_url)
    await db.start()
    try:
        assert await catalog.seed_demo(db, only_if_empty=True) == 100
        assert await catalog.seed_demo(db, only_if_empty=True) == 0
    finally:
        await db.stop()
    page = (await client.get("/api/products", params={"limit": "100"})).json()
    assert len(page["items"]) == 100
    assert page["next_cursor"] is None


async def test_with_product_caching_off_every_read_is_the_database(data_dir: Path) -> None:
    """MONOLITH_CACHE_PRODUCTS=off: a row changed behind the app's back shows at once."""
    settings = make_settings(data_dir, MONOLITH_CACHE_PRODUCTS="off")
    async with app_client(settings) as c:
        r = await c.post("/api/products", json={"name": "Lamp", "price_cents": 5}, headers=ADMIN)
        pid = r.json()["id"]
        assert (await c.get(f"/api/products/{pid}")).json()["price_cents"] == 5
        await behind_its_back(settings, "UPDATE products SET price_cents = 7 WHERE id = ?", (pid,))
        assert (await c.get(f"/api/products/{pid}")).json()["price_cents"] == 7
        page = (await c.get("/api/products")).json()
        assert page["items"][0]["price_cents"] == 7


async def _raw_get(app: Any, litestar: Litestar, path: str, headers: dict[str, str]) -> Any:
    """One GET straight into an ASGI layer below the request context: (status, headers, body)."""
    p, _, q = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": p, "raw_path": p.encode(), "query_string": q.encode(),
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "app": litestar, "litestar_app": litestar, "state": {},
    }  # fmt: skip
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], list(start["headers"]), body


@pytest.mark.parametrize("cache", ["on", "off"])
async def test_a_product_answered_without_litestar_is_the_answer_litestar_gives(
    db_url: str, data_dir: Path, cache: str
) -> None:
    """``GET /api/products/{id}`` is a direct read of the fast path (monolith.web.fastpath):
    served without Litestar's pipeline, header for header and byte for byte what the Litestar
    route answers; what the route would refuse, and a missing product, are Litestar's."""
    settings = make_settings(data_dir, MONOLITH_DATABASE_URL=db_url, MONOLITH_CACHE_PRODUCTS=cache)
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        [pid] = await _seed(client, 1)
        fast = app.asgi_handler.app.app  # type: ignore[attr-defined]  # context, limiter, fast path
        assert isinstance(fast, FastPath)
        litestar, through = fast.app, []

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            through.append(scope["path"])
            await litestar(scope, receive, send)

        fast.app = counted
        call = client.blocking_portal.call  # on the app's own loop (its database pool's)
        etag = (await client.get(f"/api/products/{pid}")).headers["etag"]
        cases = {
            f"/api/products/{pid}": ({}, True),
            f"/api/products/{pid} again": ({}, True),
            f"/api/products/{pid} unchanged": ({"If-None-Match": etag}, True),
            f"/api/products/{pid} changed": ({"If-None-Match": '"other"'}, True),
            f"/api/products/{pid}?x=1": ({}, False),
            "/api/products/987654": ({}, False),
            "/api/products/0": ({}, False),
            f"/api/products/0{pid}": ({}, False),
            "/api/products/abc": ({}, False),
            f"/api/products/{2**62 + 1}": ({}, False),
        }
        for name, (headers, direct) in cases.items():
            path = name.split(" ")[0]
            fast.copies.clear()  # a direct read, not a kept copy
            through.clear()
            got = call(_raw_get, fast, app, path, headers)
            assert bool(through) is not direct, f"{name}: {'Litestar' if through else 'direct'}"
            assert got == call(_raw_get, litestar, app, path, headers), name
        ok = call(_raw_get, fast, app, f"/api/products/{pid}", {})
        assert ok[0] == 200 and ok[2].startswith(b'{"id":%d,' % pid)
        # The read goes to the database each time with the cache off, a change shows at once.
        await behind_its_back(settings, "UPDATE products SET stock = 4242 WHERE id = ?", (pid,))
        fresh = (await client.get(f"/api/products/{pid}")).json()["stock"]
        assert fresh == (4242 if cache == "off" else 0)
