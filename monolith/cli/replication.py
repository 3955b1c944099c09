"""``monolith replicate``, ``monolith standby`` and ``monolith promote``: the database's copy
off the box (Litestream), a warm standby kept from it, and the standby's promotion.

``monolith restore --from-replica`` lives with ``restore`` (:mod:`monolith.cli.backup`).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from monolith.cli.common import add_json_flag, emit, settings_from_env
from monolith.errors import ConfigError
from monolith.logs import get_logger
from monolith.replication import open_litestream
from monolith.replication.replicator import Replicator
from monolith.replication.standby import Standby, promote

log = get_logger("monolith.replication")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replicate",
        help="replicate the SQLite database off the box with Litestream (MONOLITH_REPLICA_URL)",
        description="Run Litestream for the configured database and replica, with its "
        "configuration written from MONOLITH_* settings. Changes reach the replica within "
        "2 x MONOLITH_REPLICA_SYNC_SECONDS + 1 s of their commit; the lag and the last snapshot "
        "are written to the data dir for doctor and /metrics. Runs until SIGTERM.",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print Litestream's configuration and exit"
    )
    p.set_defaults(func=cmd_replicate)

    p = sub.add_parser(
        "standby",
        help="keep a warm standby: a copy restored from the replica, refreshed continuously",
        description="On a second box, from an empty data dir: restore the replica, check it, "
        "put it in place, and do it again after a pause, until SIGTERM. The app started on "
        "this data dir serves reads only and /health/ready says how far behind the copy is "
        "(not ready past MONOLITH_STANDBY_MAX_LAG_SECONDS). `monolith promote` ends it.",
    )
    p.set_defaults(func=cmd_standby)

    p = sub.add_parser(
        "promote",
        help="make a standby's copy the primary database (stop `monolith standby` first)",
        description="Restore once more from the replica (everything the lost primary "
        "replicated), check it, and remove the standby mark: start the app and "
        "`monolith replicate` afterwards. With --no-catch-up, the copy is promoted as it is "
        "(when the replica cannot be reached).",
    )
    p.add_argument(
        "--no-catch-up", action="store_true", help="promote the copy as it is, without a restore"
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_promote)


def _on_stop(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_replicate(args: argparse.Namespace) -> int:
    settings = settings_from_env(service=True)
    if settings.replication.standby:
        raise ConfigError(
            f"{settings.data_dir} is a standby's data dir: it replicates after monolith promote"
        )
    litestream = open_litestream(settings)
    if args.print_config:
        with litestream.config_file() as config:
            print(config.read_text(), end="")
        return 0
    replicator = Replicator(litestream, settings.data_dir)
    _on_stop(replicator.stop.set)
    return replicator.run()


def cmd_standby(args: argparse.Namespace) -> int:
    del args
    settings = settings_from_env(service=True)
    standby = Standby(open_litestream(settings), settings.data_dir)
    standby.claim()
    _on_stop(standby.stop.set)
    log.info(
        "standby started",
        replica=standby.litestream.replica.describe(),
        database=str(standby.db_path),
        max_lag_seconds=settings.replication.standby_max_lag_seconds,
    )
    worker = threading.Thread(target=standby.run, name="standby")
    worker.start()
    while worker.is_alive():
        worker.join(0.5)  # the main thread stays free for the signal handlers
    log.info("standby stopped", rounds=standby.status.rounds)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    started = time.monotonic()
    status = promote(
        Standby(open_litestream(settings), settings.data_dir), catch_up=not args.no_catch_up
    )
    assert status.restored_at is not None
    emit(
        args,
        {
            "database": str(settings.data_dir),
            "copy_of_replica_at": datetime.fromtimestamp(status.restored_at, UTC).isoformat(),
            "integrity": "ok",
            "seconds": round(time.monotonic() - started, 3),
        },
        lambda d: (
            f"promote: {d['database']} holds the replica as of {d['copy_of_replica_at']} "
            f"(integrity ok, {d['seconds']}s); start the app and monolith replicate"
        ),
    )
    return 0
