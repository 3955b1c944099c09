"""The seed stack's job driver: enqueue COUNT no-op jobs through arq and print jobs/s.

Run in the peers' own environment (``bench/.venv-peers``, made by ``make bench``), as the
seed's web app and arq workers are: arq holds redis-py below 6, while monolith's own
environment takes the redis-py a production install gets.

    bench/.venv-peers/bin/python -m bench.peers.seed.driver REDIS_URL QUEUE ID_PREFIX COUNT
"""

from __future__ import annotations

import asyncio
import sys
import time

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import result_key_prefix


async def jobs_per_second(redis_url: str, queue: str, id_prefix: str, count: int) -> float:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue)
    ids = [f"{id_prefix}-{i}" for i in range(count)]
    try:
        started = time.perf_counter()
        for i in range(0, count, 200):
            await asyncio.gather(*(pool.enqueue_job("noop", _job_id=j) for j in ids[i : i + 200]))
        deadline = started + 120
        # Cheap wait first (every job taken), then the exact check (every result stored).
        while await pool.zcard(queue) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        done = 0
        while time.perf_counter() < deadline:
            done = 0
            for i in range(0, count, 1000):
                done += await pool.exists(*(result_key_prefix + j for j in ids[i : i + 1000]))
            if done == count:
                return count / (time.perf_counter() - started)
            await asyncio.sleep(0.01)
        raise SystemExit(f"arq finished {done} of {count} jobs in 120 s")
    finally:
        await pool.aclose()


if __name__ == "__main__":
    url, queue_name, prefix, total = sys.argv[1:5]
    print(asyncio.run(jobs_per_second(url, queue_name, prefix, int(total))))
