"""``monolith worker``: the job runner and the scheduler, with no HTTP server.

The same code ``serve`` runs in one of its workers, as its own unit: set
``MONOLITH_RUN_JOBS=no`` for ``serve`` and run this beside it (or on another box, with the
queue on PostgreSQL). Several may run: one leads, the others stand by and take over within
seconds. SIGTERM (or Ctrl-C) stops claiming, lets jobs in hand finish within
``MONOLITH_JOBS_GRACE_SECONDS`` and hands back the rest, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from monolith.cli.common import run, settings_from_env
from monolith.errors import ConfigError
from monolith.logs import get_logger
from monolith.observability.metrics import enable_multiprocess
from monolith.services import build_services

log = get_logger("monolith.worker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker", help="run the job runner and the scheduler (no HTTP)", description=__doc__
    )
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from_env(service=True)
    if settings.replication.standby:
        raise ConfigError(
            f"{settings.data_dir} is a standby's data dir: jobs run after monolith promote"
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
