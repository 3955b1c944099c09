"""A write cancelled at any point (a job past its grace, a client gone) leaves the database
usable and never half-applies: what follows commits normally."""

from __future__ import annotations

import asyncio
import contextlib

from monolith.db import Database


async def _insert(db: Database, name: str) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO products (name, price_cents, created_at, updated_at) VALUES (?, 1, 0, 0)",
            (name,),
        )
        await tx.execute("UPDATE products SET stock = stock + 1 WHERE name = ?", (name,))


async def test_cancelling_writes_at_every_step_leaves_the_database_usable(db: Database) -> None:
    for steps in range(30):
        # Two writers so that cancellation also lands while another waits to join the batch.
        tasks = [asyncio.create_task(_insert(db, f"c{steps}-{i}")) for i in range(2)]
        for _ in range(steps):
            await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _insert(db, f"after-{steps}")
    after = await db.fetch_all("SELECT stock FROM products WHERE name LIKE 'after-%'")
    assert [row[0] for row in after] == [1] * 30
    # Nothing half-done: every product that exists got its stock update in the same transaction.
    assert await db.fetch_val("SELECT COUNT(*) FROM products WHERE stock <> 1") == 0
