"""No-op jobs per second on SQLite, enqueue to completion, with the real runner.

    python -m bench.jobs_throughput [--jobs N] [--concurrency C] [--smoke]

Enqueues N no-op jobs (in transactions of 1,000, as a busy app would in bursts) while the
elected runner of the same process claims batches and records completions in grouped
transactions, and reports jobs/s from the first enqueue to the last completion. The baseline,
measured in the same run, is the same no-op coroutines fed through an in-memory
``asyncio.Queue`` to the same number of consumers: the ratio says what durability costs.
The target on the 2-core reference box is >= 5,000 jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from monolith.config import JobSettings
from monolith.database.migrate import migrate
from monolith.db import open_database
from monolith.jobs import JobContext, Jobs, Registry

TARGET = 5000.0


async def durable(n: int, concurrency: int, data_dir: Path) -> float:
    registry = Registry()
    done = 0
    finished = asyncio.Event()

    @registry.job("bench.noop", max_attempts=1, timeout=None)
    async def noop(ctx: JobContext) -> None:
        nonlocal done
        done += 1
        if done == n:
            finished.set()

    db = open_database(f"sqlite:///{data_dir / 'bench.db'}")
    await db.start()
    await migrate(db)
    jobs = Jobs(
        db,
        JobSettings(concurrency=concurrency, poll_seconds=0.5),
        data_dir=data_dir,
        registry=registry,
        run=True,
        context=None,
    )
    await jobs.start()
    while not jobs.leading:
        await asyncio.sleep(0.01)
    try:
        started = time.perf_counter()
        for offset in range(0, n, 1000):
            await jobs.enqueue_many("bench.noop", [None] * min(1000, n - offset))
        await asyncio.wait_for(finished.wait(), timeout=600)
        # Completion means recorded: wait until no job is queued or running (each count reads
        # its partial index; done jobs stay in the table).
        while await db.fetch_val(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued') "
            "+ (SELECT COUNT(*) FROM jobs WHERE state = 'running')"
        ):
            await asyncio.sleep(0.005)
        return n / (time.perf_counter() - started)
    finally:
        await jobs.stop()
        await db.stop()


async def in_memory(n: int, concurrency: int) -> float:
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def noop() -> None:
        return None

    async def consume() -> None:
        while await queue.get() is not None:
            await asyncio.create_task(noop())

    started = time.perf_counter()
    consumers = [asyncio.create_task(consume()) for _ in range(concurrency)]
    for i in range(n):
        queue.put_nowait(i)
    for _ in consumers:
        queue.put_nowait(None)
    await asyncio.gather(*consumers)
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="a quick run (2,000 jobs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    n = 2000 if args.smoke else args.jobs
    with tempfile.TemporaryDirectory(prefix="monolith-bench-") as tmp:
        rate = asyncio.run(durable(n, args.concurrency, Path(tmp)))
    baseline = asyncio.run(in_memory(n, args.concurrency))
    result = {
        "bench": "jobs_throughput",
        "jobs": n,
        "concurrency": args.concurrency,
        "jobs_per_second": round(rate),
        "baseline_in_memory_per_second": round(baseline),
        "ratio_to_baseline": round(rate / baseline, 4),
        "target_per_second": TARGET,
        "meets_target": rate >= TARGET,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"jobs_throughput: {rate:,.0f} no-op jobs/s on SQLite, enqueue to completion "
            f"({n:,} jobs, concurrency {args.concurrency}); in-memory baseline {baseline:,.0f}/s "
            f"(ratio {rate / baseline:.3f}); target {TARGET:,.0f}/s: "
            f"{'met' if rate >= TARGET else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
