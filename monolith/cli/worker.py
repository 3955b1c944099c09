"""``monolith worker``: a job runner (and a candidate for the scheduler), with no HTTP server.

The same code ``serve`` runs in its workers, as its own unit: set ``MONOLITH_RUN_JOBS=no`` for
``serve`` and run this beside it, or as many as needed, on other boxes too with the queue on
PostgreSQL; every one of them runs jobs (unless ``MONOLITH_JOBS_RUNNERS=leader``). One of
them is elected to fire the schedules; another takes over within seconds when it dies.
``--queues email,default`` takes jobs of those queues only (default: ``MONOLITH_JOBS_QUEUES``,
else every queue). SIGTERM (or Ctrl-C) stops claiming, lets jobs in hand finish within
``MONOLITH_JOBS_GRACE_SECONDS`` and hands back the rest, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal

from monolith.cli.common import fail, run, settings_from_env
from monolith.errors import ConfigError
from monolith.logs import get_logger
from monolith.observability.metrics import enable_multiprocess
from monolith.services import build_services

log = get_logger("monolith.worker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker", help="run jobs (and perhaps the scheduler), no HTTP", description=__doc__
    )
    p.add_argument(
        "--queues",
        metavar="Q1,Q2",
        help="run jobs of these queues only (default: MONOLITH_JOBS_QUEUES, else every queue)",
    )
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from_env(service=True)
    if settings.replication.standby:
        raise ConfigError(
            f"{settings.data_dir} is a standby's data dir: jobs run after monolith promote"
        )
    if args.queues is not None:
        queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
        if not queues:
            return fail("worker", "--queues needs at least one queue name")
        settings = dataclasses.replace(
            settings, jobs=dataclasses.replace(settings.jobs, queues=queues)
        )
    # Job counts go to files that serve's /metrics adds in (MONOLITH_METRICS_PEERS).
    enable_multiprocess(settings.worker_metrics_dir, wipe=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        svc = build_services(settings, run_jobs=True)
        svc.observability.watch_loop = True
        await svc.start()
        log.info("worker started", database=svc.db.describe())
        try:
            await stop.wait()
            log.info("worker stopping", grace=settings.jobs.grace_seconds)
        finally:
            await svc.stop()
            log.info("worker stopped")

    run(main())
    return 0
