"""How long a live event takes from one instance to a client of another (``make bench``).

    python -m bench.event_latency [--events N]

Two ``monolith serve`` instances on one fresh PostgreSQL database (pub/sub through it, woken
by LISTEN/NOTIFY), the store on Redis. An SSE client is connected to instance B; N times, a
product's stock is changed through instance A, and the time from sending that PATCH to the
``product.updated`` event arriving at B's client is recorded (so it includes the write
itself). Then the same with ``MONOLITH_CHANNELS_URL`` on Redis. Prints p50/p99/max per
backend; the target is p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from bench.procs import Proc, free_port, spawn, wait_http

PG = os.environ.get("MONOLITH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("MONOLITH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "bench-admin-token-" + "x" * 16
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-qc", sql], check=True)


async def measure(url_a: str, url_b: str, events: int) -> list[float]:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{url_a}/api/products",
            json={"name": "Latency", "price_cents": 100, "stock": 1},
            headers=ADMIN,
        )
        product = r.json()["id"]
        times = []
        async with aconnect_sse(
            http, "GET", f"{url_b}/api/events", params={"channels": "products"}
        ) as source:
            stream = source.aiter_sse()
            await anext(stream)  # hello: B listens from here on
            for n in range(events):
                stock = 1000 + n
                sent = time.perf_counter()
                await http.patch(
                    f"{url_a}/api/products/{product}", json={"stock": stock}, headers=ADMIN
                )
                while True:
                    event = json.loads((await anext(stream)).data)
                    if event.get("type") == "product.updated" and (
                        event["product"]["stock"] == stock
                    ):
                        break
                times.append(time.perf_counter() - sent)
        return times


def run_pair(channels_url: str, events: int, work: Path) -> list[float]:
    name = f"monolith_bench_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    procs: list[Proc] = []
    try:
        urls = []
        for role in ("a", "b"):
            port = free_port()
            (work / name).mkdir(exist_ok=True)  # serve makes its data dir, not the parents
            env = {
                "MONOLITH_ENV": "test",
                "MONOLITH_DATA_DIR": str(work / name / role),
                "MONOLITH_DATABASE_URL": f"{PG}/{name}",
                "MONOLITH_STORE_URL": f"{REDIS}?namespace={name}",
                "MONOLITH_CHANNELS_URL": channels_url.format(name=name),
                "MONOLITH_ADMIN_TOKEN": TOKEN,
                "MONOLITH_SECRET_KEY": "bench-secret-" + "y" * 32,
                "MONOLITH_RATE_LIMITS": "api=0/minute",
                "MONOLITH_RUN_JOBS": "no",
                "MONOLITH_LOG_LEVEL": "warning",
            }
            cmd = [sys.executable, "-m", "monolith", "serve", "--port", str(port), "--workers", "1"]
            proc = spawn(f"serve-{role}", cmd, env, work / f"{name}-{role}.log")
            procs.append(proc)
            wait_http(proc, f"http://127.0.0.1:{port}/health/ready")
            urls.append(f"http://127.0.0.1:{port}")
        return asyncio.run(measure(urls[0], urls[1], events))
    finally:
        for proc in procs:
            proc.stop()
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="monolith-event-latency-") as tmp:
        for label, channels in (
            ("PostgreSQL LISTEN/NOTIFY", ""),
            ("Redis pub/sub", f"{REDIS}?namespace={{name}}:channels"),
        ):
            times = sorted(run_pair(channels, args.events, Path(tmp)))
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(
                f"event A -> client of B, {label}: p50 {statistics.median(times) * 1000:.1f} ms"
                f"  p99 {p99 * 1000:.1f} ms  max {times[-1] * 1000:.1f} ms  "
                f"({len(times)} events; target p99 < 100 ms)"
            )


if __name__ == "__main__":
    main()
