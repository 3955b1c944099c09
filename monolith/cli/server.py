"""``monolith serve``: the web app on granian, after applying pending migrations."""

from __future__ import annotations

import argparse
import os
import socket
import time

from monolith.cli.common import (
    check_port,
    fail,
    reachable_database,
    run,
    settings_from_env,
    started_services,
)
from monolith.config import parse_workers
from monolith.doctor import write_serve_file
from monolith.observability.metrics import Metrics, enable_multiprocess, forget_process
from monolith.server import serve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the app with granian (ASGI); applies pending migrations first",
        description="Serve the app with granian (--interface asgi). On SIGTERM it refuses new "
        "connections briefly, then lets in-flight requests finish.",
    )
    p.add_argument("--host", help="address to bind (default MONOLITH_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default MONOLITH_PORT or 8000)")
    p.add_argument("--workers", help="worker processes, a number or 'auto' (= CPU count)")
    p.add_argument(
        "--reload",
        action="store_true",
        help="restart the workers when a .py file under the current folder changes "
        "(development; granian's reloader, watchfiles)",
    )
    p.set_defaults(func=cmd_serve)


def port_answers(host: str, port: int) -> bool:
    """True when something already accepts connections on ``host:port``.

    granian binds with ``SO_REUSEPORT``, so a second server on a taken port would start
    without error and the kernel would share connections between two different apps.
    """
    if port == 0:
        return False
    # A wildcard address is asked on loopback.
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    try:
        with socket.create_connection((target, port), timeout=1):
            return True
    except OSError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    # Every argument and setting is checked before anything is written.
    port = check_port(args.port) if args.port is not None else None
    workers = parse_workers(args.workers) if args.workers else None
    settings = settings_from_env(service=True)
    host = args.host or settings.server.host
    port = settings.server.port if port is None else port
    if port_answers(host, port):
        return fail("serve", f"{host}:{port} already answers; is another server running there?")
    run(reachable_database(settings))  # a missing PostgreSQL database: one line, nothing written
    # Before anything counts and before granian forks: every process of this serve writes
    # its metrics to a fresh directory, and /metrics adds them up.
    enable_multiprocess(settings.serve_metrics_dir)
    metrics = Metrics()
    metrics.serve_started.set(time.time())

    def on_respawn(old_pids: list[int]) -> None:
        for pid in old_pids:
            forget_process(pid)
        metrics.worker_restarts.inc(len(old_pids))

    async def prepare() -> None:
        async with started_services(settings):
            pass  # starting applies pending migrations once, before any worker exists

    run(prepare())
    forget_process(os.getpid())  # this process's gauges from prepare(): it serves no requests
    workers = workers or settings.server.workers
    write_serve_file(settings, workers)  # doctor reports the real worker count
    serve(
        host=host,
        port=port,
        workers=workers,
        graceful_timeout=settings.server.graceful_timeout,
        log_level=settings.log.level,
        on_respawn=on_respawn,
        reload=args.reload,
    )
    return 0
