"""Acceptance: a `make run` database plus 10,000 orders and jobs in flight moves to PostgreSQL,
and the app's code serves the same orders from it and runs the jobs that were waiting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from monolith.db import Database, open_database
from monolith.jobs import Jobs
from monolith.shop.orders import model as orders
from tests.apphelpers import make_settings
from tests.profile import DEFAULT_BACKENDS
from tests.server import ServerProcess, box_env, run_cli

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.profile_independent]

ORDERS = 10_000
USERS = 20
PER_TX = 250
DEMOS = 40
IN_FLIGHT = 5


async def _place_orders(db: Database) -> None:
    """10,000 orders through the orders domain, 1-3 lines each, spread over 20 users."""
    await db.execute("UPDATE products SET stock = 1000000")
    for start in range(0, ORDERS, PER_TX):
        async with db.transaction() as tx:
            for n in range(start, start + PER_TX):
                lines = [
                    orders.OrderLineIn(product_id=1 + (n * 7 + k * 13) % 100, quantity=1 + k)
                    for k in range(1 + n % 3)
                ]
                await orders.place_order(tx, 1 + n % USERS, orders.OrderIn(items=lines))


async def _make_source(data_dir: Path) -> None:
    settings = make_settings(data_dir, **DEFAULT_BACKENDS)
    db = open_database(settings.database.url)
    await db.start()
    jobs = Jobs(db, settings.jobs, data_dir=data_dir, context=None)
    try:
        await _place_orders(db)
        await jobs.start()
        await jobs.enqueue_many("ops.demo", [{"n": n} for n in range(DEMOS)])
        # A runner took some and died: leased, running, with a lease that has run out.
        claimed = await jobs.queue.claim("box-1:4242:dead", IN_FLIGHT, lease=0.5)
        assert len(claimed.jobs) == IN_FLIGHT
    finally:
        await jobs.stop()
        await db.stop()


async def _every_order(db: Database) -> list[orders.Order]:
    found: list[orders.Order] = []
    for user in range(1, USERS + 1):
        before = 0
        while page := await orders.list_orders(db, user, limit=orders.MAX_PAGE, before=before):
            found += page
            before = page[-1].id
    return found


async def _orders_on(url: str) -> list[orders.Order]:
    db = open_database(url)
    await db.start()
    try:
        return await _every_order(db)
    finally:
        await db.stop()


async def _job_states(url: str) -> dict[str, int]:
    db = open_database(url)
    await db.start()
    try:
        rows = await db.fetch_all(
            "SELECT state, COUNT(*) FROM jobs WHERE name = 'ops.demo' GROUP BY state"
        )
        return {r[0]: int(r[1]) for r in rows}
    finally:
        await db.stop()


def test_ten_thousand_orders_and_jobs_in_flight_move_to_postgresql(
    tmp_path: Path, fresh_pg_url: str
) -> None:
    data_dir = tmp_path / "var"
    env = box_env(data_dir)
    for command in (("migrate",), ("seed-demo", "--if-empty")):  # what `make run` does first
        assert run_cli(*command, env=env).returncode == 0
    asyncio.run(_make_source(data_dir))
    sqlite_url = make_settings(data_dir, **DEFAULT_BACKENDS).database.url

    done = run_cli("migrate-data", "--to", fresh_pg_url, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "every row count and checksum matches" in done.stdout
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert f"{ORDERS} rows  ok" in lines["orders"]
    assert lines["order_items"].endswith("ok") and lines["jobs"].endswith("ok")

    on_sqlite = asyncio.run(_orders_on(sqlite_url))
    on_postgres = asyncio.run(_orders_on(fresh_pg_url))
    assert len(on_sqlite) == ORDERS
    assert on_postgres == on_sqlite

    # The jobs moved with their state: the dead runner's lease, the others still queued.
    assert asyncio.run(_job_states(fresh_pg_url)) == {
        "running": IN_FLIGHT,
        "queued": DEMOS - IN_FLIGHT,
    }
    worker_env = {**env, "MONOLITH_DATABASE_URL": fresh_pg_url}
    with ServerProcess(data_dir, command=("worker",), env=worker_env) as worker:
        # Finished jobs are kept (MONOLITH_JOBS_KEEP): wait until every one of them is done.
        deadline = time.monotonic() + 60
        while (
            asyncio.run(_job_states(fresh_pg_url)) != {"done": DEMOS}
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)
        assert asyncio.run(_job_states(fresh_pg_url)) == {"done": DEMOS}, worker.log_text()
