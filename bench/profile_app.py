"""``python -m bench.profile_app [PATH] [--requests N] [--profile OUT]``: one request's cost.

Calls the ASGI app in-process, as granian would, with no server, socket or load generator, so
the numbers hold on a busy machine: microseconds of CPU per request for monolith (production
settings, a fresh data dir with the demo catalog, rate limits on but high) and for the
Litestar hello peer, and optionally a pyinstrument profile of monolith's requests. This is the
evidence behind "what limits it" in docs/BENCHMARKS.md; ``make bench`` measures the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.monolith_system import RATE_LIMITS


def _scope(path: str) -> dict[str, Any]:
    p, _, q = path.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": p, "raw_path": p.encode(), "query_string": q.encode(),
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def _call(app: Any, scope: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({**scope, "state": {}}, receive, send)
    return int(sent[0]["status"])


async def _lifespan(app: Any) -> Any:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


async def measure(app: Any, path: str, requests: int, profile: str | None) -> tuple[float, float]:
    """(wall, CPU) microseconds per request after a warm-up."""
    stop = await _lifespan(app)
    scope = _scope(path)
    try:
        for _ in range(500):
            status = await _call(app, scope)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(requests):
            await _call(app, scope)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler is not None and profile:
            profiler.stop()
            with open(profile, "w") as out:
                out.write(profiler.output_text(unicode=False, color=False))
        return wall / requests * 1e6, cpu / requests * 1e6
    finally:
        await stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_app", description=__doc__)
    parser.add_argument("path", nargs="?", default="/api/products?limit=20")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", help="write monolith's pyinstrument profile here")
    args = parser.parse_args(argv)

    from bench.peers.hello import app as hello

    data = tempfile.mkdtemp(prefix="monolith-profile-")
    os.environ.update(
        {
            "MONOLITH_DATA_DIR": data,
            "MONOLITH_ENV": "production",
            "MONOLITH_SECRET_KEY": "p" * 48,
            "MONOLITH_LOG_FORMAT": "json",
            "MONOLITH_RATE_LIMITS": os.environ.get("MONOLITH_RATE_LIMITS", RATE_LIMITS),
        }
    )
    for command in ("migrate", "seed-demo"):
        subprocess.run([sys.executable, "-m", "monolith", command], check=True, capture_output=True)

    from monolith.app import create_app
    from monolith.config import load_settings
    from monolith.logs import configure_logging

    settings = load_settings(dotenv=None)
    configure_logging(settings.log)
    sys.stdout = open(os.devnull, "w")  # the access log: written, but not to the terminal  # noqa: SIM115
    app = create_app(settings)
    results = {
        "Litestar hello": asyncio.run(measure(hello, args.path, args.requests, None)),
        "monolith": asyncio.run(measure(app, args.path, args.requests, args.profile)),
    }
    sys.stdout = sys.__stdout__
    if args.profile:
        print(f"profile written to {args.profile} (its overhead inflates monolith's numbers)")
    for name, (wall, cpu) in results.items():
        print(f"{name:15} GET {args.path}: {cpu:7.1f} us CPU, {wall:7.1f} us wall per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
