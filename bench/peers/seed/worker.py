"""The peer's arq worker: ``arq bench.peers.seed.worker.WorkerSettings``, a separate process."""

from __future__ import annotations

import time
from typing import Any

from arq.connections import RedisSettings
from sqlalchemy import update

from bench.peers.seed import settings
from bench.peers.seed.models import Order, SessionLocal, engine


async def noop(ctx: dict[str, Any]) -> None:
    """The benchmark's no-op job: what the queue itself costs per job."""


async def confirm_order(ctx: dict[str, Any], order_id: int) -> None:
    now = time.time()
    async with SessionLocal() as session, session.begin():
        await session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == "pending")
            .values(status="confirmed", confirmed_at=now, updated_at=now)
        )


async def shutdown(ctx: dict[str, Any]) -> None:
    await engine.dispose()


class WorkerSettings:
    functions = [noop, confirm_order]
    queue_name = settings.QUEUE
    redis_settings = RedisSettings.from_dsn(settings.REDIS_URL)
    poll_delay = settings.ARQ_POLL_DELAY
    on_shutdown = shutdown
