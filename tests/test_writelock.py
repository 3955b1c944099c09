"""The box's write lock (monolith.database.writelock): handed over between holders, in order,
by one waiting thread per process however many waits there are.

Two ``BoxWriteLock`` objects on the same files contend exactly like two processes: ``flock``
belongs to the open file, and each object opens its own.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from monolith.database.writelock import BoxWriteLock
from monolith.errors import DatabaseBusy


def _held(lock: BoxWriteLock) -> bool:
    return lock.held


def _waiting_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-write-lock"]


async def test_contended_waits_are_handed_over_by_one_thread(tmp_path: Path) -> None:
    a, b = BoxWriteLock(tmp_path / "db"), BoxWriteLock(tmp_path / "db")
    a.open()
    b.open()
    loop = asyncio.get_running_loop()
    before = len(_waiting_threads())
    try:
        for _ in range(200):
            await a.acquire(loop.time() + 5)
            waiting = asyncio.create_task(b.acquire(loop.time() + 5))
            await asyncio.sleep(0)  # b finds the lock taken and waits on its thread
            assert not waiting.done() and not _held(b)
            a.release()
            await asyncio.wait_for(waiting, 5)
            assert _held(b)
            assert not a.try_acquire()  # b holds it now
            b.release()
        # One thread per lock object that ever waited, not one per wait.
        assert len(_waiting_threads()) - before == 1
    finally:
        a.close()
        b.close()


async def test_a_wait_past_its_deadline_is_busy_and_the_late_grant_is_let_go(
    tmp_path: Path,
) -> None:
    a, b = BoxWriteLock(tmp_path / "db"), BoxWriteLock(tmp_path / "db")
    a.open()
    b.open()
    loop = asyncio.get_running_loop()
    try:
        await a.acquire(loop.time() + 5)
        with pytest.raises(DatabaseBusy):
            await b.acquire(loop.time() + 0.05)
        assert not _held(b)
        a.release()
        # b's thread gets the lock after the deadline and hands it straight back.
        deadline = loop.time() + 10
        while not a.try_acquire():
            assert loop.time() < deadline, "the late grant was never let go"
            await asyncio.sleep(0.01)
        a.release()
        # And b can wait again on the same thread.
        await b.acquire(loop.time() + 5)
        assert _held(b)
        b.release()
    finally:
        a.close()
        b.close()
