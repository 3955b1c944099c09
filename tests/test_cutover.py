"""Acceptance: the fenced cutover loses no acknowledged write.

Real processes: ``monolith serve --workers 2`` on SQLite takes orders from several clients
while ``monolith migrate-data`` moves the database to PostgreSQL. Afterwards every order
acknowledged with 201 is in PostgreSQL with its items, the stock there is the starting stock
minus what those orders took, and nothing the server refused (503 while fenced) is there.
Reads keep working through the fence; the fence stays after the move and names the target;
``--unfence`` lifts it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from monolith.db import open_database
from tests.server import ServerProcess, box_env, run_cli
from tests.test_orders_processes import account

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.profile_independent]

CLIENTS = 6
STOCK = 1_000_000
PRODUCTS = (1, 2, 3)


async def _rows(url: str, sql: str) -> list[Any]:
    db = open_database(url)
    await db.start()
    try:
        return list(await db.fetch_all(sql))
    finally:
        await db.stop()


def rows(url: str, sql: str) -> list[Any]:
    return asyncio.run(_rows(url, sql))


def order_load(
    url: str, users: list[dict[str, str]], stop: threading.Event
) -> tuple[list[tuple[int, dict[str, Any]]], Counter[int]]:
    """Clients placing orders until ``stop``: the 201 answers (and what they ordered), and the
    count of every status seen."""

    async def client(who: dict[str, str], n: int, done: list[Any], seen: Counter[int]) -> None:
        async with httpx.AsyncClient(base_url=url, headers=who, timeout=30) as http:
            i = 0
            while not stop.is_set():
                items = [{"product_id": PRODUCTS[(n + i) % 3], "quantity": 1 + i % 2}]
                r = await http.post("/api/orders", json={"items": items})
                seen[r.status_code] += 1
                if r.status_code == 201:
                    done.append((int(r.json()["id"]), {"items": items, "body": r.json()}))
                elif r.status_code == 503:
                    assert r.headers.get("retry-after"), r.text
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"{r.status_code}: {r.text}")
                i += 1

    async def main() -> tuple[list[tuple[int, dict[str, Any]]], Counter[int]]:
        done: list[tuple[int, dict[str, Any]]] = []
        seen: Counter[int] = Counter()
        await asyncio.gather(*(client(who, n, done, seen) for n, who in enumerate(users)))
        return done, seen

    return asyncio.run(main())


def test_orders_taken_during_migrate_data_all_reach_postgresql(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    data_dir = tmp_path / "var"
    env = box_env(data_dir)
    for command in (("migrate",), ("seed-demo", "--if-empty")):
        assert run_cli(*command, env=env).returncode == 0
    sqlite_url = f"sqlite:///{data_dir / 'monolith.db'}"
    asyncio.run(_set_stock(sqlite_url))

    with ServerProcess(data_dir, workers=2, env=env) as server:
        users = [account(server.url, f"cutover{i}@example.com") for i in range(CLIENTS)]
        stop = threading.Event()
        result: list[Any] = []
        load = threading.Thread(
            target=lambda: result.append(order_load(server.url, users, stop)), daemon=True
        )
        load.start()
        _wait_for_orders(sqlite_url, 30)  # the load is taking orders before the move starts
        moved = run_cli("migrate-data", "--to", fresh_pg_url, env=env, timeout=300)
        # Fenced now: writes are refused with 503, reads still answer.
        fenced_write = httpx.post(
            f"{server.url}/api/orders",
            json={"items": [{"product_id": 1, "quantity": 1}]},
            headers=users[0],
            timeout=30,
        )
        read = httpx.get(f"{server.url}/api/products/1", timeout=30)
        stop.set()
        load.join(120)
        assert not load.is_alive()
        log = server.log_text()

    assert moved.returncode == 0, moved.stderr + log
    assert "every row count and checksum matches" in moved.stdout
    assert "stays fenced" in moved.stdout
    assert fenced_write.status_code == 503 and fenced_write.headers["retry-after"]
    assert "moved to" in fenced_write.json()["detail"]
    assert read.status_code == 200

    acknowledged, statuses = result[0]
    assert statuses[201] >= 30 and set(statuses) <= {201, 503}, statuses

    # Every acknowledged order is in PostgreSQL, with exactly its items.
    ids = {oid for oid, _ in acknowledged}
    on_pg = {
        int(r[0]): (int(r[1]), int(r[2]))
        for r in rows(fresh_pg_url, "SELECT order_id, product_id, quantity FROM order_items")
    }
    for oid, placed in acknowledged:
        item = placed["items"][0]
        assert on_pg.get(oid) == (item["product_id"], item["quantity"]), oid
    # Nothing else: no order PostgreSQL holds was refused to its client.
    pg_orders = {int(r[0]) for r in rows(fresh_pg_url, "SELECT id FROM orders")}
    assert pg_orders == ids
    # Stock is the start minus what the acknowledged orders took.
    taken: Counter[int] = Counter()
    for _, placed in acknowledged:
        taken[placed["items"][0]["product_id"]] += placed["items"][0]["quantity"]
    stock = dict(
        (int(r[0]), int(r[1]))
        for r in rows(fresh_pg_url, "SELECT id, stock FROM products WHERE id IN (1, 2, 3)")
    )
    assert stock == {p: STOCK - taken[p] for p in PRODUCTS}
    # The fenced SQLite holds the same (verified by migrate-data; checked here once more).
    assert {int(r[0]) for r in rows(sqlite_url, "SELECT id FROM orders")} == ids

    # The fence stays until lifted; --unfence lifts it.
    assert run_cli("migrate-data", "--verify-only", "--to", fresh_pg_url, env=env).returncode == 0
    doctor = run_cli("doctor", env=env)
    assert "fenced" in doctor.stdout and doctor.returncode == 1
    lifted = run_cli("migrate-data", "--unfence", env=env)
    assert lifted.returncode == 0 and "fence lifted" in lifted.stdout
    asyncio.run(_write(sqlite_url))


async def _set_stock(url: str) -> None:
    db = open_database(url)
    await db.start()
    try:
        await db.execute(f"UPDATE products SET stock = {STOCK} WHERE id IN (1, 2, 3)")
    finally:
        await db.stop()


async def _write(url: str) -> None:
    db = open_database(url)
    await db.start()
    try:
        await db.execute("UPDATE products SET stock = stock + 1 WHERE id = 1")
    finally:
        await db.stop()


def _wait_for_orders(url: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(rows(url, "SELECT COUNT(*) FROM orders")[0][0]) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"fewer than {count} orders within {timeout}s")
