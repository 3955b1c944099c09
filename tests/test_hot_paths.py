"""The hot paths on real processes: kept copies of responses are never served stale, a write has
one deadline, and orders survive kill -9 exactly once.

- After a write is acknowledged, no worker and no instance serves the old value: readers on
  both workers (one box: SQLite and the disk store) and on both instances (two ``serve``
  processes on one PostgreSQL and one Redis) read the product and the catalog page through the
  fast path while an admin changes the price; a read that *started* after a change was
  acknowledged and shows an older price is a stale read, and there must be none.
- ``MONOLITH_WRITE_TIMEOUT``: with an ``sqlite3`` shell holding ``BEGIN EXCLUSIVE``, four
  orders queue; each is answered 503 with ``Retry-After``, and none of them is committed after
  the shell lets go.
- kill -9 of the whole server under order load: after a restart, every acknowledged order is
  there once, the stock taken is exactly what the stored orders took, and each order is
  confirmed exactly once.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env, box_env
from tests.services import (
    REDIS_URL,
    pg_admin,
    pg_url,
    redis_delete_prefix,
    require_binary,
    require_postgres,
    require_redis,
    unique_name,
)

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct horse battery staple"
CEILING = 60.0  # any wait in this module: a hang fails, a slow machine does not


def signed_in(url: str, email: str) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post(
            "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "Hot"}
        )
        assert r.status_code == 201, r.text
        r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Cookie": f"monolith_session={r.cookies['monolith_session']}"}


def new_product(url: str, stock: int = 1000, price: int = 100) -> int:
    r = httpx.post(
        f"{url}/api/products",
        json={"name": "Hot kettle", "price_cents": price, "stock": stock},
        headers=ADMIN,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# -- 0 stale reads -----------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("disk", marks=pytest.mark.profile_independent),
        pytest.param(
            "redis",
            marks=[pytest.mark.redis, pytest.mark.postgres, pytest.mark.profile_independent],
        ),
    ],
)
def instances(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    """One box (one serve, 2 workers, SQLite and the disk store), or two instances (2 workers
    each) on one PostgreSQL database and one Redis."""
    root = tmp_path_factory.mktemp(f"stale-{request.param}")
    with ExitStack() as stack:
        if request.param == "disk":
            data_dir = root / "var"
            data_dir.mkdir()
            servers = [ServerProcess(data_dir, workers=2, env=box_env(data_dir))]
        else:
            require_postgres()
            require_redis()
            name = unique_name("monolith_hot")
            pg_admin(f'CREATE DATABASE "{name}"')
            stack.callback(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            stack.callback(redis_delete_prefix, f"{name}:")
            shared = {
                "MONOLITH_DATABASE_URL": pg_url(name),
                "MONOLITH_STORE_URL": f"{REDIS_URL}?namespace={name}:store",
                "MONOLITH_CHANNELS_URL": f"{REDIS_URL}?namespace={name}:channels",
                "MONOLITH_INSTANCES": "2",
            }
            servers = []
            for role in ("a", "b"):
                data_dir = root / role / "var"
                data_dir.mkdir(parents=True)
                env = base_env(data_dir, **shared)
                env.pop("MONOLITH_CACHE_URL", None)
                servers.append(ServerProcess(data_dir, workers=2, env=env))
        for server in servers:
            server.start(wait=False)
            stack.callback(server.stop)
        for server in servers:
            server.wait_ready(timeout=CEILING)
        yield servers


def test_after_a_write_is_acknowledged_no_worker_or_instance_serves_the_old_value(
    instances: list[ServerProcess],
) -> None:
    urls = [server.url for server in instances]
    product = new_product(urls[0])
    page = f"/api/products?limit={100}"
    acked: list[tuple[float, int]] = []  # (when the change was acknowledged, its price)
    reads: list[tuple[float, int, str, str]] = []  # (when the read started, price, what, pid)
    done = threading.Event()
    lock = threading.Lock()

    def read_loop(seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            # A few requests per connection: new connections spread over both workers.
            with httpx.Client(base_url=rng.choice(urls), timeout=30) as client:
                for _ in range(5):
                    path = rng.choice([f"/api/products/{product}", page])
                    started = time.monotonic()
                    r = client.get(path)
                    assert r.status_code == 200, r.text
                    body = r.json()
                    if "items" in body:
                        found = [p for p in body["items"] if p["id"] == product]
                        assert found, "the product is missing from its catalog page"
                        body = found[0]
                    with lock:
                        reads.append(
                            (started, body["price_cents"], path, r.headers["x-worker-pid"])
                        )

    with ThreadPoolExecutor(6) as pool:
        readers = [pool.submit(read_loop, seed) for seed in range(6)]
        with httpx.Client(timeout=30) as writer:
            for version in range(1, 41):
                price = 100 + version
                r = writer.patch(
                    f"{urls[version % len(urls)]}/api/products/{product}",
                    json={"price_cents": price},
                    headers=ADMIN,
                )
                assert r.status_code == 200, r.text
                acked.append((time.monotonic(), price))
                time.sleep(0.02)
        done.set()
        for reader in readers:
            reader.result(timeout=CEILING)

    stale = []
    for started, price, path, pid in reads:
        known = [p for at, p in acked if at < started]
        if known and price < known[-1]:
            stale.append((path, pid, price, known[-1]))
    after = [r for r in reads if r[0] > acked[0][0]]
    assert len(after) > 100, "too few reads overlapped the writes to show anything"
    assert len({pid for *_, pid in after}) >= 2 * len(instances) - 1, "reads missed a worker"
    assert stale == [], f"{len(stale)} stale reads, e.g. {stale[:5]}"


# -- the write deadline ------------------------------------------------------------------------

WRITE_TIMEOUT = 2.0


@pytest.mark.profile_independent  # SQLite's own lock, held by an sqlite3 shell
def test_writes_queued_behind_a_locked_database_answer_503_and_never_commit(
    tmp_path: Path,
) -> None:
    shell = require_binary("sqlite3", "sqlite3")
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = box_env(data_dir, MONOLITH_WRITE_TIMEOUT=str(WRITE_TIMEOUT))
    with ServerProcess(data_dir, workers=2, env=env) as server:
        product = new_product(server.url, stock=50)
        user = signed_in(server.url, "deadline@example.com")
        db = data_dir / "monolith.db"
        with subprocess.Popen(
            [shell, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as holder:
            assert holder.stdin is not None and holder.stdout is not None
            try:
                holder.stdin.write("BEGIN EXCLUSIVE;\nSELECT 'holding';\n")
                holder.stdin.flush()
                assert holder.stdout.readline().strip() == "holding"

                def order(_: int) -> tuple[int, dict[str, str], float]:
                    started = time.monotonic()
                    with httpx.Client(timeout=CEILING) as client:
                        r = client.post(
                            f"{server.url}/api/orders",
                            json={"items": [{"product_id": product, "quantity": 1}]},
                            headers=user,
                        )
                    return r.status_code, dict(r.headers), time.monotonic() - started

                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(order, range(4)))
            finally:
                holder.stdin.write("ROLLBACK;\n.quit\n")
                holder.stdin.flush()
                holder.wait(timeout=CEILING)

        for status, headers, seconds in answers:
            assert status == 503, answers
            assert int(headers["retry-after"]) >= 1
            assert seconds < WRITE_TIMEOUT + 20, answers  # only a hang breaks this bound

        # The lock is free: a new order goes through, and it is the only one there is. Any
        # write still queued in a worker would have committed before it or with it.
        with httpx.Client(timeout=CEILING) as client:
            r = client.post(
                f"{server.url}/api/orders",
                json={"items": [{"product_id": product, "quantity": 1}]},
                headers=user,
            )
            assert r.status_code == 201, r.text
            listed = client.get(f"{server.url}/api/orders", headers=user).json()["items"]
            assert [o["id"] for o in listed] == [r.json()["id"]]
            stock = client.get(f"{server.url}/api/products/{product}").json()["stock"]
            assert stock == 49
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 1


# -- kill -9 -----------------------------------------------------------------------------------


@pytest.mark.profile_independent  # one box: SQLite's durability across a killed process
def test_orders_acknowledged_before_kill_9_are_there_once_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = box_env(data_dir)
    stock = 100_000
    acked: list[int] = []
    attempts = 0
    lock = threading.Lock()
    stop = threading.Event()
    server = ServerProcess(data_dir, workers=2, env=env).start(timeout=CEILING)
    try:
        product = new_product(server.url, stock=stock)
        user = signed_in(server.url, "kill9@example.com")

        def place(_: int) -> None:
            nonlocal attempts
            with httpx.Client(base_url=server.url, timeout=10) as client:
                while not stop.is_set():
                    with lock:
                        attempts += 1
                    try:
                        r = client.post(
                            "/api/orders",
                            json={"items": [{"product_id": product, "quantity": 1}]},
                            headers=user,
                        )
                    except httpx.HTTPError:
                        return  # the server is gone: this request's fate is unknown
                    if r.status_code == 201:
                        with lock:
                            acked.append(int(r.json()["id"]))

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(place, i) for i in range(8)]
            deadline = time.monotonic() + CEILING
            while len(acked) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.kill9()  # serve and both workers, mid-write
            stop.set()
            for future in futures:
                future.result(timeout=CEILING)
    finally:
        stop.set()
        server.stop()
    assert len(acked) >= 200, "too few orders before the kill"
    assert len(set(acked)) == len(acked)

    with ServerProcess(data_dir, workers=2, env=env) as again:
        with httpx.Client(base_url=again.url, timeout=30) as client:
            for order_id in acked:
                r = client.get(f"/api/orders/{order_id}", headers=user)
                assert r.status_code == 200, (order_id, r.text)
            # Every stored order gets confirmed, once, by its own job.
            deadline = time.monotonic() + CEILING
            while time.monotonic() < deadline:
                if _pending(data_dir) == 0:
                    break
                time.sleep(0.2)
        rows: dict[str, Any] = _facts(data_dir, product)
    assert rows["pending"] == 0, rows
    assert len(acked) <= rows["orders"] <= attempts, rows  # nothing lost, nothing doubled
    assert rows["taken"] == rows["quantity"] == rows["orders"], rows  # one unit per order
    assert rows["stock"] == stock - rows["orders"], rows
    assert rows["jobs"] == rows["orders"], rows  # one confirmation job per order


def _pending(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "monolith.db") as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM orders WHERE status = 'pending'").fetchone()[0]
        )


def _facts(data_dir: Path, product: int) -> dict[str, Any]:
    with sqlite3.connect(data_dir / "monolith.db") as conn:
        one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
        return {
            "orders": one("SELECT COUNT(*) FROM orders"),
            "pending": one("SELECT COUNT(*) FROM orders WHERE status = 'pending'"),
            "quantity": one("SELECT COALESCE(SUM(quantity), 0) FROM order_items"),
            "taken": one("SELECT COUNT(DISTINCT order_id) FROM order_items"),
            "stock": one("SELECT stock FROM products WHERE id = ?", product),
            "jobs": one("SELECT COUNT(*) FROM jobs WHERE name = 'orders.confirm'"),
        }
