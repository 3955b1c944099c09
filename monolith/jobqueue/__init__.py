"""The durable job queue's machinery: the queue interface and its backends, the runner, the
election and the scheduler. The public face is :mod:`monolith.jobs`.

Importing this package never imports asyncpg; :func:`open_queue` loads a backend by the
database's dialect, which is the one place that choice is made.
"""

from __future__ import annotations

from pathlib import Path

from monolith.database.base import Database
from monolith.jobqueue.base import JobQueue
from monolith.jobqueue.sqlite import SQLiteQueue


def open_queue(db: Database, data_dir: Path) -> JobQueue:
    """The queue living in ``db``; box-local signals (socket, lock file) go in ``data_dir``."""
    if db.dialect == "postgresql":
        # asyncpg is an optional dependency (monolith[postgres]): imported only when used.
        from monolith.jobqueue.postgres import PostgresQueue

        return PostgresQueue(db)
    return SQLiteQueue(db, data_dir)
