"""The job queue on SQLite: one box, any number of processes sharing the database file.

A claim is one ``BEGIN IMMEDIATE`` transaction (the Database interface starts every write that
way), which holds SQLite's single write lock from the first read to the commit: no other
process can claim the same rows or change the running counts in between, so no row locks are
needed. Wake-ups go over a UNIX datagram socket and the election is a file lock, both in the
data dir, because every process that can reach this database runs on this box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monolith.database.base import Database
from monolith.jobqueue.base import JobQueue
from monolith.jobqueue.coordination import Election, FileLockElection, SocketWakeup


class SQLiteQueue(JobQueue):
    shared = False

    def __init__(self, db: Database, data_dir: Path) -> None:
        super().__init__(db, SocketWakeup(data_dir))
        self.data_dir = data_dir

    def election(self) -> Election:
        return FileLockElection(self.data_dir)

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)
