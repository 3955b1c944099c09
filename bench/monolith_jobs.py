"""``python -m bench.monolith_jobs N``: time N no-op jobs through a running monolith's queue.

Run by the harness in a subprocess with the server's environment, while ``monolith serve``
runs its job runner in one worker: this process only enqueues (``ops.ping``, in transactions
of 1,000, as arq's driver enqueues from an already-started client) and watches the queue
table until every job is gone, then prints ``{"jobs_per_s": ..., "failed": ...}``. The clock
starts after start-up, as it does for arq, so interpreter start-up is not counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

PENDING = "SELECT COUNT(*) FROM jobs WHERE name = 'ops.ping' AND state IN ('queued', 'running')"
FAILED = "SELECT COUNT(*) FROM jobs WHERE name = 'ops.ping' AND state = 'failed'"


async def measure(count: int, timeout: float = 120) -> dict[str, float]:
    from monolith import features
    from monolith.config import load_settings
    from monolith.services import build_services

    assert "ops.ping" in features.REGISTRY.jobs  # importing features registered the app's jobs

    svc = build_services(load_settings(dotenv=None))  # enqueues only; never runs jobs
    await svc.start()
    try:
        started = time.perf_counter()
        for offset in range(0, count, 1000):
            await svc.jobs.enqueue_many("ops.ping", [None] * min(1000, count - offset))
        while await svc.db.fetch_val(PENDING):
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"jobs still pending after {timeout:.0f} s")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        failed = int(await svc.db.fetch_val(FAILED) or 0)
        return {"jobs_per_s": count / elapsed, "failed": failed}
    finally:
        await svc.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1])))))
