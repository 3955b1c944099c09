"""The orders API in process, on SQLite and PostgreSQL: placing (stock, job, cache), bad input
that changes nothing, owner-only reads, and the confirmation job run by the app's own runner.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from monolith.events import Viewer
from monolith.jobs import JobContext
from monolith.services import Services
from monolith.shop.catalog import cache as catalog_cache
from monolith.shop.catalog import model as catalog
from monolith.shop.orders.model import (
    CONFIRM_JOB,
    OrderIn,
    OrderLineIn,
    confirm_payload,
    get_order,
    place_order,
)
from tests.apphelpers import ADMIN, app_client, make_settings

PASSWORD = "correct horse battery staple"
JSON = {"Content-Type": "application/json"}
DEADLINE = 20.0  # a broken runner fails a test instead of hanging it


@pytest.fixture
async def client(db_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    async with app_client(make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)) as c:
        yield c


async def user(client: AsyncTestClient, email: str) -> dict[str, str]:
    """Sign up and log in ``email``; the headers that act as that user."""
    r = await client.post(
        "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "U"}
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.cookies.clear()  # each request says who it is, so two users can share the client
    return {"Cookie": f"monolith_session={r.cookies['monolith_session']}"}


async def product(client: AsyncTestClient, name: str, price: int, stock: int) -> int:
    r = await client.post(
        "/api/products", json={"name": name, "price_cents": price, "stock": stock}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def stock(client: AsyncTestClient, product_id: int) -> int:
    """The stock as clients see it: through the cached product route."""
    r = await client.get(f"/api/products/{product_id}")
    assert r.status_code == 200
    return int(r.json()["stock"])


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """The first truthy result of ``check()``, polled until the deadline."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    pytest.fail(f"{what}: not within {DEADLINE}s")


async def confirmed(client: AsyncTestClient, who: dict[str, str], order_id: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/api/orders/{order_id}", headers=who)
        assert r.status_code == 200, r.text
        return dict(r.json()) if r.json()["status"] == "confirmed" else None

    return dict(await eventually(check, f"order {order_id} confirmed"))


async def confirm_jobs(client: AsyncTestClient) -> int:
    """Confirmation jobs in any state, through the admin API."""
    jobs = (await client.get("/api/admin/jobs?limit=1000", headers=ADMIN)).json()["jobs"]
    return len([j for j in jobs if j["name"] == "orders.confirm"])


async def test_an_order_takes_stock_and_is_confirmed_once_by_its_job(
    client: AsyncTestClient,
) -> None:
    ada = await user(client, "ada@example.com")
    mug = await product(client, "Mug", 1250, 10)
    pot = await product(client, "Teapot", 4000, 3)
    assert await stock(client, mug) == 10  # cached now
    r = await client.post(
        "/api/orders",
        json={"items": [{"product_id": mug, "quantity": 2}, {"product_id": pot, "quantity": 1}]},
        headers=ada,
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "pending"
    assert order["total_cents"] == 2 * 1250 + 4000
    assert [(x["product_id"], x["quantity"]) for x in order["items"]] == [(mug, 2), (pot, 1)]
    # The cached product was forgotten at the commit: no stale stock, not even for a moment.
    assert (await stock(client, mug), await stock(client, pot)) == (8, 2)

    done = await confirmed(client, ada, order["id"])
    assert done["confirmed_at"] is not None

    async def done_jobs() -> list[dict[str, Any]]:
        jobs = (await client.get("/api/admin/jobs?state=done", headers=ADMIN)).json()["jobs"]
        return [j for j in jobs if j["name"] == "orders.confirm"]

    # Outcomes are recorded in batches, a moment after the job's own work.
    mine = await eventually(done_jobs, "the confirmation job recorded as done")
    assert [(j["unique_key"], j["attempts"]) for j in mine] == [
        (f"orders.confirm:{order['id']}", 1)
    ]


async def test_a_product_on_two_lines_is_one_line(client: AsyncTestClient) -> None:
    ada = await user(client, "ada@example.com")
    mug = await product(client, "Mug", 100, 10)
    items = [{"product_id": mug, "quantity": 2}, {"product_id": mug, "quantity": 3}]
    r = await client.post("/api/orders", json={"items": items}, headers=ada)
    assert r.status_code == 201, r.text
    assert [(x["product_id"], x["quantity"]) for x in r.json()["items"]] == [(mug, 5)]
    assert r.json()["total_cents"] == 500
    assert await stock(client, mug) == 5


async def test_short_stock_is_409_naming_the_product_and_takes_nothing(
    client: AsyncTestClient,
) -> None:
    ada = await user(client, "ada@example.com")
    mug = await product(client, "Mug", 100, 10)
    pot = await product(client, "Teapot", 100, 1)
    items = [{"product_id": mug, "quantity": 4}, {"product_id": pot, "quantity": 2}]
    r = await client.post("/api/orders", json={"items": items}, headers=ada)
    assert r.status_code == 409
    assert r.json() == {"status_code": 409, "detail": f"product {pot}: 2 wanted, 1 in stock"}
    assert (await stock(client, mug), await stock(client, pot)) == (10, 1)
    assert (await client.get("/api/orders", headers=ada)).json()["items"] == []
    assert await confirm_jobs(client) == 0


def _lines(n: int, product_id: int = 1) -> bytes:
    return (
        b'{"items": ['
        + b", ".join(b'{"product_id": %d, "quantity": 1}' % (product_id + i) for i in range(n))
        + b"]}"
    )


BAD_ORDERS = [
    (b'{"items": [{"product_id": 1, "quantity": 1}', 400, "malformed JSON"),
    (b"", 400, "request body is empty"),
    (b'{"items": []}', 422, "items: Expected `array` of length >= 1"),
    (b"{}", 422, "items: field required"),
    (b'{"items": [{"product_id": 1, "quantity": 0}]}', 422, "items[0].quantity: Expected"),
    (b'{"items": [{"product_id": 1, "quantity": -2}]}', 422, "items[0].quantity: Expected"),
    (b'{"items": [{"product_id": 1, "quantity": 1001}]}', 422, "items[0].quantity: Expected"),
    (b'{"items": [{"product_id": 1, "quantity": "1"}]}', 422, "items[0].quantity: Expected"),
    (b'{"items": [{"product_id": 0, "quantity": 1}]}', 422, "items[0].product_id: Expected"),
    (b'{"items": [{"product_id": 1}]}', 422, "items[0].quantity: field required"),
    (b'{"items": [{"product_id": 1, "quantity": 1, "x": 1}]}', 422, "`x`"),
    (b'{"items": [{"product_id": 999, "quantity": 1}]}', 422, "items: product 999 does not"),
    (_lines(51), 422, "items: Expected `array` of length <= 50"),
]


async def test_bad_orders_change_nothing(client: AsyncTestClient) -> None:
    ada = await user(client, "ada@example.com")
    mug = await product(client, "Mug", 100, 10)
    assert mug == 1  # the bodies name product 1
    for body, status, detail in BAD_ORDERS:
        r = await client.post("/api/orders", content=body, headers={**JSON, **ada})
        assert (r.status_code, r.json()["status_code"]) == (status, status), (body, r.text)
        assert detail in r.json()["detail"], (body, r.text)
    assert await stock(client, mug) == 10
    assert (await client.get("/api/orders", headers=ada)).json()["items"] == []
    assert await confirm_jobs(client) == 0


async def test_an_unknown_product_after_good_lines_takes_nothing(client: AsyncTestClient) -> None:
    ada = await user(client, "ada@example.com")
    mug = await product(client, "Mug", 100, 10)
    items = [{"product_id": mug, "quantity": 3}, {"product_id": mug + 50, "quantity": 1}]
    r = await client.post("/api/orders", json={"items": items}, headers=ada)
    assert r.status_code == 422
    assert r.json()["detail"] == f"items: product {mug + 50} does not exist"
    assert await stock(client, mug) == 10
    assert await confirm_jobs(client) == 0


async def test_orders_need_a_signed_in_user(client: AsyncTestClient) -> None:
    mug = await product(client, "Mug", 100, 10)
    body = {"items": [{"product_id": mug, "quantity": 1}]}
    assert (await client.post("/api/orders", json=body)).status_code == 401
    assert (await client.get("/api/orders")).status_code == 401
    assert (await client.get("/api/orders/1")).status_code == 401
    forged = {"Cookie": "monolith_session=forged"}
    assert (await client.post("/api/orders", json=body, headers=forged)).status_code == 401
    assert await stock(client, mug) == 10


async def test_a_user_reads_only_their_own_orders(client: AsyncTestClient) -> None:
    ada = await user(client, "ada@example.com")
    bob = await user(client, "bob@example.com")
    mug = await product(client, "Mug", 100, 10)
    body = {"items": [{"product_id": mug, "quantity": 1}]}
    adas = [(await client.post("/api/orders", json=body, headers=ada)).json()["id"] for _ in "abc"]
    bobs = (await client.post("/api/orders", json=body, headers=bob)).json()["id"]

    assert (await client.get(f"/api/orders/{adas[0]}", headers=ada)).status_code == 200
    # Another user's order answers exactly like one that does not exist.
    theirs = await client.get(f"/api/orders/{adas[0]}", headers=bob)
    missing = await client.get("/api/orders/999999", headers=bob)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == f"order {adas[0]} not found"
    assert missing.json()["detail"] == "order 999999 not found"

    page = (await client.get("/api/orders", headers=ada)).json()
    assert [o["id"] for o in page["items"]] == adas[::-1]
    assert page["next_before"] is None
    first = (await client.get("/api/orders?limit=2", headers=ada)).json()
    assert [o["id"] for o in first["items"]] == adas[:0:-1]
    assert first["next_before"] == adas[1]
    rest = await client.get(f"/api/orders?limit=2&before={first['next_before']}", headers=ada)
    assert [o["id"] for o in rest.json()["items"]] == adas[:1]
    assert [o["id"] for o in (await client.get("/api/orders", headers=bob)).json()["items"]] == [
        bobs
    ]
    for bad in ("limit=0", "limit=101", "before=0", "before=x"):
        assert (await client.get(f"/api/orders?{bad}", headers=ada)).status_code == 422, bad


async def run_confirm_job(svc: Services, payload: dict[str, object], attempt: int) -> None:
    spec = svc.jobs.registry.get(CONFIRM_JOB)
    await spec.fn(JobContext(1, CONFIRM_JOB, attempt, 10, payload, None, svc.jobs, svc))


async def test_the_confirmation_job_announces_once_and_forgets_stale_stock(svc: Services) -> None:
    """Run twice (delivery is at least once): one ``order.confirmed``, one confirmed_at; and
    each run forgets the products' cached stock, repairing an invalidation the request missed
    (here: stock changed by an order whose request never invalidated)."""
    async with svc.db.transaction() as tx:
        mug = await catalog.create_product(tx, catalog.ProductIn("Mug", 100, stock=10))
    assert b'"stock":10' in (await catalog_cache.cached_product_json(svc, mug.id) or b"")
    async with svc.db.transaction() as tx:
        order = await place_order(tx, 1, OrderIn([OrderLineIn(mug.id, 3)]))
    assert b'"stock":10' in (await catalog_cache.cached_product_json(svc, mug.id) or b"")  # stale

    async with svc.events.listen(["orders"], Viewer(user_id=1)) as listener:
        await run_confirm_job(svc, confirm_payload(order), attempt=1)
        assert b'"stock":7' in (await catalog_cache.cached_product_json(svc, mug.id) or b"")
        first = await get_order(svc.db, 1, order.id)
        assert first is not None and first.status == "confirmed"
        await run_confirm_job(svc, confirm_payload(order), attempt=2)
        assert await get_order(svc.db, 1, order.id) == first  # confirmed_at set once
        await svc.events.publish("orders", {"type": "sentinel"}, audience=1)
        heard = []
        async with asyncio.timeout(DEADLINE):
            async for event in listener:
                heard.append(json.loads(event.data)["type"])
                if heard[-1] == "sentinel":
                    break
    assert heard == ["order.confirmed", "sentinel"]
