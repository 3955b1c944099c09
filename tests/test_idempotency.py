"""``Idempotency-Key``: a retried write gives the first answer and writes nothing more, on
SQLite and PostgreSQL; duplicates racing on two workers take stock once."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from monolith.db import open_database
from monolith.web import idempotency
from tests.apphelpers import ADMIN, app_client, make_settings
from tests.server import ServerProcess, base_env
from tests.test_orders_api import user


@pytest.fixture
async def client(db_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    settings = make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)
    async with app_client(settings) as shop:
        yield shop


PASSWORD = "correct horse battery staple"


async def stock(client: AsyncTestClient, product_id: int) -> int:
    return int((await client.get(f"/api/products/{product_id}")).json()["stock"])


async def test_a_retried_order_is_the_same_order_and_takes_stock_once(
    client: AsyncTestClient,
) -> None:
    ada = await user(client, "ada@example.com")
    r = await client.post(
        "/api/products", json={"name": "Lamp", "price_cents": 250, "stock": 5}, headers=ADMIN
    )
    lamp = r.json()["id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"items": [{"product_id": lamp, "quantity": 2}]}

    first = await client.post("/api/orders", json=body, headers={**ada, **key})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/api/orders", json=body, headers={**ada, **key})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await stock(client, lamp) == 3
    listed = (await client.get("/api/orders", headers=ada)).json()["items"]
    assert [o["id"] for o in listed] == [first.json()["id"]]

    # The same key with another body is a 422, and writes nothing.
    other = {"items": [{"product_id": lamp, "quantity": 1}]}
    r = await client.post("/api/orders", json=other, headers={**ada, **key})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("Idempotency-Key")
    assert await stock(client, lamp) == 3

    # Keys are per client: another user's same key is a new order.
    bob = await user(client, "bob@example.com")
    r = await client.post("/api/orders", json=body, headers={**bob, **key})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in r.headers
    assert await stock(client, lamp) == 1

    # A refused order records nothing: once it can be served, the same key goes through.
    short = {"Idempotency-Key": "short-1"}
    r = await client.post("/api/orders", json=body, headers={**ada, **short})
    assert r.status_code == 409
    r = await client.patch(f"/api/products/{lamp}", json={"stock": 10}, headers=ADMIN)
    assert r.status_code == 200
    r = await client.post("/api/orders", json=body, headers={**ada, **short})
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert await stock(client, lamp) == 8


async def test_keys_that_are_not_keys_are_a_400(client: AsyncTestClient) -> None:
    ada = await user(client, "ada@example.com")
    for bad in ("", "x" * 256, "with space"):
        r = await client.post(
            "/api/orders",
            json={"items": [{"product_id": 1, "quantity": 1}]},
            headers={**ada, "Idempotency-Key": bad},
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["detail"].startswith("Idempotency-Key")
    assert (await client.get("/api/orders", headers=ada)).json()["items"] == []


async def test_admin_writes_take_a_key(client: AsyncTestClient, db_url: str) -> None:
    key = {"Idempotency-Key": "create-lamp"}
    product = {"name": "Lamp", "price_cents": 250, "stock": 5}
    first = await client.post("/api/products", json=product, headers={**ADMIN, **key})
    again = await client.post("/api/products", json=product, headers={**ADMIN, **key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len((await client.get("/api/products")).json()["items"]) == 1
    job = {"name": "ops.ping", "count": 3}
    enqueue = {**ADMIN, "Idempotency-Key": "three-pings"}
    ids = [(await client.post("/api/admin/jobs", json=job, headers=enqueue)).json() for _ in "ab"]
    assert ids[0] == ids[1] and len(ids[0]["ids"]) == 3
    listed = (await client.get("/api/admin/jobs?limit=100", headers=ADMIN)).json()["jobs"]
    assert len([j for j in listed if j["name"] == "ops.ping"]) == 3

    # Records older than 24 hours are forgotten by the cleanup, and the key is free again.
    db = open_database(db_url)
    await db.start()
    try:
        await db.execute(
            "UPDATE idempotency_keys SET created_at = created_at - ?",
            (idempotency.KEEP_SECONDS + 1,),
        )
        assert await idempotency.prune(db, time.time()) == 2
    finally:
        await db.stop()
    r = await client.post("/api/products", json=product, headers={**ADMIN, **key})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]


@pytest.mark.slow
def test_duplicates_racing_on_two_workers_take_stock_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    with ServerProcess(data_dir, workers=2, env=base_env(data_dir)) as proc:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            account = {"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}
            assert c.post("/api/auth/signup", json=account).status_code == 201
            login = c.post(
                "/api/auth/login", json={"email": account["email"], "password": PASSWORD}
            )
            cookie = {"Cookie": login.headers["set-cookie"].split(";")[0]}
            c.cookies.clear()
            lamp = c.post(
                "/api/products",
                json={"name": "Lamp", "price_cents": 250, "stock": 100},
                headers=ADMIN,
            ).json()["id"]

        def order(_: int) -> httpx.Response:
            # A new connection each: the duplicates land on both workers.
            with httpx.Client(timeout=30) as one:
                return one.post(
                    f"{proc.url}/api/orders",
                    json={"items": [{"product_id": lamp, "quantity": 3}]},
                    headers={**cookie, "Idempotency-Key": "the-one-order"},
                )

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(order, range(24)))
        assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
        assert len({r.headers["x-worker-pid"] for r in answers}) == 2
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            assert c.get(f"/api/products/{lamp}").json()["stock"] == 97
            assert len(c.get("/api/orders", headers=cookie).json()["items"]) == 1
