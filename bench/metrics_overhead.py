"""What the HTTP metrics and the loop monitor add to every request, in the request middleware.

    python -m bench.metrics_overhead [--requests N]

Calls ``RequestContextMiddleware`` around a minimal ASGI app N times per round, in
prometheus_client's multi-process mode (as ``serve`` runs it), with the access line filtered
out so only the per-request work is measured. The baseline, measured in the same run, is
the same middleware without metrics and monitor; the report is microseconds per request
and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog


async def _app(scope: Any, receive: Any, send: Any) -> None:
    scope["path_template"] = "/api/products/{product_id}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def _round(middleware: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/products/5",
            "headers": [(b"host", b"x")],
            "client": ("127.0.0.1", 5000),
        }
        await middleware(scope, receive, send)
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int, rounds: int) -> dict[str, float]:
    from monolith.observability.loopmon import LoopMonitor
    from monolith.observability.metrics import Metrics, enable_multiprocess
    from monolith.web.middleware import RequestContextMiddleware

    enable_multiprocess(Path(tempfile.mkdtemp()) / "metrics")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    monitor = LoopMonitor()
    await monitor.start()
    plain = RequestContextMiddleware(_app)
    measured = RequestContextMiddleware(_app, metrics=Metrics(), monitor=monitor)
    base, full = [], []
    for _ in range(rounds):  # interleaved, best of: noise on a shared box only adds
        base.append(await _round(plain, n))
        full.append(await _round(measured, n))
    await monitor.stop()
    return {
        "baseline_us": round(min(base), 2),
        "with_metrics_us": round(min(full), 2),
        "added_us": round(min(full) - min(base), 2),
        "ratio": round(min(full) / min(base), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.requests, args.rounds)), indent=2))
