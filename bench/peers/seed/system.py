"""The harness side of the seed stack: its database, Redis keys, processes and job driver.

Per bench run: a PostgreSQL database of its own (created, loaded with the catalog, dropped at
the end) and a Redis key prefix of its own (every key under it deleted at the end, including
arq's ``arq:*:<prefix>-*`` job keys). Per start: uvicorn with the bench's worker count plus
two arq worker processes (the article's ``replicas: 2``), all run by the peers' own Python
(``bench/.venv-peers``, which ``make bench`` creates; arq there holds redis-py below 6).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from bench.catalog import products
from bench.procs import Server, free_port, spawn, wait_http
from bench.system import NotAvailable, RunContext, System

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ARQ_WORKERS = 2
ROOT = Path(__file__).resolve().parents[3]
#: The peers run in their own environment (``make bench-peers``): arq holds redis-py below 6,
#: and monolith's environment takes the redis-py a production install gets.
PEERS_PYTHON = os.environ.get("BENCH_PEERS_PYTHON") or str(ROOT / "bench/.venv-peers/bin/python")
ARQ_POLL_DELAY = os.environ.get("BENCH_ARQ_POLL_DELAY", "0.01")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Seed(System):
    key = "seed"
    label = "seed stack (FastAPI+Redis+PG+arq)"
    variants = ("default", "cache_off")
    has_jobs = True

    def __init__(self) -> None:
        self.db_name = ""
        self.prefix = f"seedbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.session = secrets.token_urlsafe(16)
        self.admin_token = secrets.token_urlsafe(16)
        self.order_id = 0
        self._created = False
        self._jobs_run = 0

    @property
    def sqlalchemy_url(self) -> str:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"{base}/{self.db_name}"

    def setup(self, ctx: RunContext) -> None:
        missing = [
            what
            for what, url, port in (("PostgreSQL", PG_ADMIN_URL, 5432), ("Redis", REDIS_URL, 6379))
            if not _reachable(url, port)
        ]
        if missing:
            raise NotAvailable(f"{' and '.join(missing)} not reachable")
        if not Path(PEERS_PYTHON).exists():
            raise NotAvailable(f"{PEERS_PYTHON} is missing: make bench-peers creates it")
        probe = subprocess.run(
            [PEERS_PYTHON, "-c", "import arq, fastapi, sqlalchemy, uvicorn"],
            capture_output=True,
            text=True,
        )
        if probe.returncode:
            raise NotAvailable(f"the peers' environment is incomplete: {probe.stderr[-200:]}")
        self.db_name = f"bench_seed_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{self.db_name}"'))
        self._created = True
        asyncio.run(self._load(ctx.products))

    async def _load(self, count: int) -> None:
        import redis.asyncio as aioredis
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        from bench.peers.seed.models import Base, Order, OrderItem, Product, User

        engine = create_async_engine(self.sqlalchemy_url)
        now = time.time()
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with AsyncSession(engine) as session, session.begin():
            session.add_all(Product(**p, created_at=now, updated_at=now) for p in products(count))
            user = User(email="bench@example.com", name="Bench", created_at=now)
            session.add(user)
            await session.flush()
            order = Order(user_id=user.id, status="confirmed", total_cents=199, created_at=now,
                          updated_at=now)  # fmt: skip
            session.add(order)
            await session.flush()
            line = OrderItem(order_id=order.id, product_id=1, product_name="Product 001",
                             quantity=1, unit_price_cents=199)  # fmt: skip
            session.add(line)
            self.order_id = order.id
            user_id = user.id
        await engine.dispose()
        client = aioredis.from_url(REDIS_URL)
        try:
            await client.set(
                f"{self.prefix}:session:{self.session}", json.dumps({"user_id": user_id})
            )
        finally:
            await client.aclose()

    def teardown(self) -> None:
        if not self._created:
            return
        asyncio.run(self._delete_keys())
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self._created = False

    async def _delete_keys(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS_URL)
        try:
            for pattern in (f"{self.prefix}*", f"arq:*:{self.prefix}-*"):
                batch: list[bytes] = []
                async for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        await client.delete(*batch)
                        batch.clear()
                if batch:
                    await client.delete(*batch)
        finally:
            await client.aclose()

    def env(self, variant: str) -> dict[str, str]:
        return {
            "SEED_DATABASE_URL": self.sqlalchemy_url,
            "SEED_REDIS_URL": REDIS_URL,
            "SEED_PREFIX": self.prefix,
            "SEED_ADMIN_TOKEN": self.admin_token,
            "SEED_CACHE_PRODUCTS": "off" if variant == "cache_off" else "on",
            "SEED_ARQ_POLL_DELAY": ARQ_POLL_DELAY,
        }

    def start(self, variant: str, ctx: RunContext) -> Server:
        port = free_port()
        env = self.env(variant)
        log = ctx.workdir / "seed.log"
        cmd = [
            PEERS_PYTHON, "-m", "uvicorn", "bench.peers.seed.app:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(ctx.workers),
        ]  # fmt: skip
        web = spawn("seed uvicorn", cmd, env, log)
        server = Server(f"http://127.0.0.1:{port}", web)
        try:
            arq_cmd = [PEERS_PYTHON, "-m", "arq", "bench.peers.seed.worker.WorkerSettings"]
            for i in range(ARQ_WORKERS):
                server.helpers.append(spawn(f"seed arq {i}", arq_cmd, env, ctx.workdir / "arq.log"))
            wait_http(web, server.url + "/health/ready")
            server.check_alive()
        except BaseException:
            server.stop()
            raise
        server.params = {
            "cookie": f"session={self.session}",
            "admin": f"Bearer {self.admin_token}",
            "oid": str(self.order_id),
        }
        return server

    def jobs_per_second(self, server: Server, count: int) -> float:
        """arq's rate, driven from the peers' environment (bench.peers.seed.driver)."""
        self._jobs_run += 1
        run = subprocess.run(
            [
                PEERS_PYTHON,
                "-m",
                "bench.peers.seed.driver",
                REDIS_URL,
                f"{self.prefix}:queue",
                f"{self.prefix}-noop{self._jobs_run}",
                str(count),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
        if run.returncode:
            raise NotAvailable(f"arq driver: {(run.stderr or run.stdout).strip()[-300:]}")
        return float(run.stdout.strip().splitlines()[-1])
