"""Orders on real processes: ``monolith serve --workers 2`` on SQLite, accounts made through
the HTTP API. No unit is sold twice, every order is confirmed exactly once by the job runner
(in whichever worker leads), every worker's SSE clients hear it, no worker serves the old
stock, the orders limit holds across both workers, and a separate ``monolith worker`` process
runs the confirmation job too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess, base_env
from tests.test_across_workers import ADMIN, CEILING, sse_on_each_worker
from tests.test_state_workers import fresh, many, on_both, pids

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
ORDERS_LIMIT = 12  # per user and minute; the load test's users stay under it (10 orders each)
LIMITS = f"login=0/minute,signup=0/minute,orders={ORDERS_LIMIT}/minute,api=0/minute"
DEADLINE = 60.0  # for every order to be confirmed: a stuck runner fails, never hangs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("orders") / "var"
    data_dir.mkdir()
    with ServerProcess(
        data_dir, workers=2, env=base_env(data_dir, MONOLITH_RATE_LIMITS=LIMITS)
    ) as srv:
        yield srv


def account(url: str, email: str) -> dict[str, str]:
    """Sign up and log in through the API; the headers that act as that user."""
    r = fresh(
        "POST", f"{url}/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "U"}
    )
    assert r.status_code == 201, r.text
    r = fresh("POST", f"{url}/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Cookie": f"monolith_session={r.cookies['monolith_session']}"}


def new_product(url: str, name: str, stock: int) -> int:
    r = fresh(
        "POST",
        f"{url}/api/products",
        headers=ADMIN,
        json={"name": name, "price_cents": 700, "stock": stock},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def one(product_id: int) -> dict[str, Any]:
    return {"items": [{"product_id": product_id, "quantity": 1}]}


async def wait_confirmed(client: httpx.AsyncClient, order_id: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        r = await client.get(f"/api/orders/{order_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] == "confirmed":
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"order {order_id} was not confirmed within {DEADLINE}s")


async def test_200_orders_for_50_units_sell_50_each_confirmed_once(server: ServerProcess) -> None:
    emails = [f"buyer{i}@example.com" for i in range(20)]
    users = await asyncio.gather(*(asyncio.to_thread(account, server.url, e) for e in emails))
    lamp = new_product(server.url, "Lamp", 50)
    spare = new_product(server.url, "Spare", 5)
    product_url = f"{server.url}/api/products/{lamp}"
    warm = on_both(8, "GET", product_url)  # cached now, read through both workers
    assert {r.json()["stock"] for r in warm} == {50} and len(pids(warm)) == 2

    async with AsyncExitStack() as stack:
        streams = await sse_on_each_worker(server, stack, ADMIN)  # admins hear order events
        heard: dict[int, list[dict[str, Any]]] = {pid: [] for pid in streams}

        async def listen(pid: int) -> None:
            while True:
                heard[pid].append(await streams[pid].next())

        listeners = [asyncio.create_task(listen(pid)) for pid in streams]
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, headers=who, timeout=CEILING)
            )
            for who in users
        ]
        # 200 at once: each user's client opens ~10 connections, spread over both workers.
        results = await asyncio.gather(
            *(clients[i % 20].post("/api/orders", json=one(lamp)) for i in range(200))
        )
        assert Counter(r.status_code for r in results) == {201: 50, 409: 150}
        assert len(pids(list(results))) == 2
        placed = {
            int(r.json()["id"]): i % 20 for i, r in enumerate(results) if r.status_code == 201
        }
        assert len(placed) == 50
        assert all(r.json()["status"] == "pending" for r in results if r.status_code == 201)
        refused = next(r for r in results if r.status_code == 409)
        assert refused.json()["detail"] == f"product {lamp}: 1 wanted, 0 in stock"

        deadline = time.monotonic() + DEADLINE
        await asyncio.gather(
            *(wait_confirmed(clients[u], oid, deadline) for oid, u in placed.items())
        )
        # No worker serves the stock it cached before the orders.
        after = on_both(8, "GET", product_url)
        assert {r.json()["stock"] for r in after} == {0} and len(pids(after)) == 2

        # One more order, confirmed after all the others: once its event is heard, any
        # duplicate announcement of the earlier ones (published before it) was heard too.
        marker = await clients[0].post("/api/orders", json=one(spare))
        assert marker.status_code == 201
        marker_id = marker.json()["id"]

        def marked(events: list[dict[str, Any]]) -> bool:
            return any(e["type"] == "order.confirmed" and e["id"] == marker_id for e in events)

        while not all(marked(events) for events in heard.values()):
            assert time.monotonic() < deadline, "the marker order's event never arrived"
            await asyncio.sleep(0.05)
        for task in listeners:
            task.cancel()

    for pid, events in heard.items():
        confirmed = Counter(e["id"] for e in events if e["type"] == "order.confirmed")
        assert confirmed == Counter({**dict.fromkeys(placed, 1), marker_id: 1}), pid
        # Listeners heard the stock go down to nothing (product.updated after each order).
        stocks = {
            e["product"]["stock"]
            for e in events
            if e["type"] == "product.updated" and e["id"] == lamp
        }
        assert 0 in stocks, pid

    # The queue's own record: one confirmation job per order, each run exactly once.
    jobs = fresh("GET", f"{server.url}/api/admin/jobs?state=done&limit=1000", headers=ADMIN)
    runs = {
        j["unique_key"]: j["attempts"] for j in jobs.json()["jobs"] if j["name"] == "orders.confirm"
    }
    assert runs == {f"orders.confirm:{oid}": 1 for oid in [*placed, marker_id]}
    assert all(
        j["name"] != "orders.confirm"
        for state in ("queued", "running", "failed")
        for j in fresh("GET", f"{server.url}/api/admin/jobs?state={state}", headers=ADMIN).json()[
            "jobs"
        ]
    )


def test_the_orders_limit_answers_429_across_workers(server: ServerProcess) -> None:
    who = account(server.url, "eager@example.com")
    mug = new_product(server.url, "Mug", 100)
    tries = many(3 * ORDERS_LIMIT, "POST", f"{server.url}/api/orders", json=one(mug), headers=who)
    assert sorted(r.status_code for r in tries) == [201] * ORDERS_LIMIT + [429] * (2 * ORDERS_LIMIT)
    assert len(pids(tries)) == 2
    refused = next(r for r in tries if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == str(ORDERS_LIMIT)
    assert refused.json()["detail"].startswith("rate limit exceeded")
    # Only placing orders is limited, and only for this user.
    mine = fresh("GET", f"{server.url}/api/orders?limit=100", headers=who)
    assert mine.status_code == 200 and len(mine.json()["items"]) == ORDERS_LIMIT
    assert fresh("GET", f"{server.url}/api/products/{mug}").json()["stock"] == 100 - ORDERS_LIMIT
    other = account(server.url, "patient@example.com")
    assert (
        fresh("POST", f"{server.url}/api/orders", json=one(mug), headers=other).status_code == 201
    )


def test_owner_only_reads_across_workers(server: ServerProcess) -> None:
    ada = account(server.url, "ada@example.com")
    eve = account(server.url, "eve@example.com")
    pen = new_product(server.url, "Pen", 5)
    r = fresh("POST", f"{server.url}/api/orders", json=one(pen), headers=ada)
    assert r.status_code == 201
    url = f"{server.url}/api/orders/{r.json()['id']}"
    assert {x.status_code for x in many(8, "GET", url, headers=ada)} == {200}
    probes = many(8, "GET", url, headers=eve) + many(
        8, "GET", f"{server.url}/api/orders/999999", headers=eve
    )
    assert {x.status_code for x in probes} == {404} and len(pids(probes)) == 2
    assert {x.json()["detail"].split()[0] for x in probes} == {"order"}
    assert fresh("GET", f"{server.url}/api/orders", headers=eve).json()["items"] == []
    assert fresh("GET", url).status_code == 401


def test_without_a_runner_orders_wait_and_a_worker_process_confirms_them(tmp_path: Path) -> None:
    """``serve`` with ``MONOLITH_RUN_JOBS=no``: nothing runs jobs, so the order stays pending
    and the stock every worker serves is the request's own invalidation at work. Then
    ``monolith worker`` starts and confirms it: that process registers ``orders.confirm``."""
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = base_env(data_dir, MONOLITH_RUN_JOBS="no")
    with ServerProcess(data_dir, workers=2, env=env) as web:
        who = account(web.url, "solo@example.com")
        cup = new_product(web.url, "Cup", 3)
        warm = on_both(8, "GET", f"{web.url}/api/products/{cup}")
        assert {x.json()["stock"] for x in warm} == {3} and len(pids(warm)) == 2
        r = fresh("POST", f"{web.url}/api/orders", json=one(cup), headers=who)
        assert r.status_code == 201
        url = f"{web.url}/api/orders/{r.json()['id']}"
        after = on_both(8, "GET", f"{web.url}/api/products/{cup}")
        assert {x.json()["stock"] for x in after} == {2} and len(pids(after)) == 2
        assert fresh("GET", url, headers=who).json()["status"] == "pending"
        with ServerProcess(data_dir, command=("worker",), env=env):
            deadline = time.monotonic() + DEADLINE
            while fresh("GET", url, headers=who).json()["status"] != "confirmed":
                assert time.monotonic() < deadline, f"not confirmed within {DEADLINE}s"
                time.sleep(0.1)
