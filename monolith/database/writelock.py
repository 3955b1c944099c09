"""The box's one SQLite write lock, handed over first come, first served between processes.

Every process on the box (``serve``'s workers, ``monolith worker``, one-shot commands) writes
to the same SQLite file, and SQLite lets one write at a time. Left to SQLite, a process that
finds the file locked *sleeps* in its busy handler (1, 2, 5 … up to 100 ms between tries) and
nobody is first in line: under load the writers of two workers sleep on each other, and a
write's wait is a lottery of sleeps (the order tail in docs/BENCHMARKS.md). Here the processes
queue in the kernel instead, with two ``flock`` files:

- ``<db>-writer``: held from ``BEGIN IMMEDIATE`` to ``COMMIT`` (one group-commit batch);
- ``<db>-writer-queue``: the line. A process takes it before the writer lock and drops it once
  it has the writer lock, so at most one process waits on the writer lock, and a process that
  just released it must queue behind that one before it can take it again (no barging: two
  busy workers alternate batches instead of one starving the other).

Uncontended, taking the lock is three non-blocking ``flock`` calls on the event loop (~2 µs).
Contended, the blocking ``flock`` runs on the process's waiting thread (one daemon thread,
started at the first wait and kept: starting a thread per wait cost the loop ~12% of its
time under a paced order load, blocked in ``Thread.start`` until the new thread ran) and the
waiter is woken by the kernel the moment the holder lets go. A wait that outlives its
deadline raises :class:`~monolith.errors.DatabaseBusy`; the thread keeps its place in line,
and the lock it then gets goes to this process's next writer, or straight back when there is
none.

Processes that do not take part (an ``sqlite3`` shell) still meet SQLite's own lock, which
``BEGIN IMMEDIATE`` waits for under ``busy_timeout``, bounded by the same deadline.

What this module must never do: hold the lock with no writer to release it, or let two flock
calls of one process be outstanding at once (a file's lock belongs to the open file, so the
second would "succeed" on the first's lock).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue

from monolith.errors import DatabaseBusy


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class BoxWriteLock:
    """See the module docstring. One per database per process; used under the process's own
    write lock, so one caller at a time."""

    def __init__(self, db_path: Path) -> None:
        self.paths = (Path(f"{db_path}-writer-queue"), Path(f"{db_path}-writer"))
        self._fds: tuple[int, int] | None = None
        self._pending: _Grant | None = None
        self.held = False
        #: The waiting thread's inbox: one blocking wait at a time (see _wait_in_thread).
        self._inbox: SimpleQueue[Callable[[], None] | None] | None = None

    def open(self) -> None:
        if self._fds is None:
            fds = [os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) for p in self.paths]
            self._fds = (fds[0], fds[1])

    def close(self) -> None:
        if self._fds is not None and self._pending is None:
            for fd in self._fds:
                os.close(fd)  # also drops any lock this process held
            self._fds = None
            self.held = False
            if self._inbox is not None:  # the thread is idle (nothing pending): let it end
                self._inbox.put(None)
                self._inbox = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free now and nobody of this process waits for it."""
        assert self._fds is not None and not self.held
        if self._pending is not None:
            return False
        queue, writer = self._fds
        if not _try(queue):
            return False
        got = _try(writer)
        fcntl.flock(queue, fcntl.LOCK_UN)
        self.held = got
        return got

    async def acquire(self, deadline: float) -> None:
        """Take the lock (``deadline`` on the loop's clock), or raise :class:`DatabaseBusy`."""
        assert self._fds is not None and not self.held
        queue, writer = self._fds
        if self._pending is None:
            if _try(queue):
                if _try(writer):
                    fcntl.flock(queue, fcntl.LOCK_UN)
                    self.held = True
                    return
                self._pending = self._wait_in_thread(writer, queue, queued=True)
            else:
                self._pending = self._wait_in_thread(writer, queue, queued=False)
        grant = self._pending
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            raise DatabaseBusy(_TOO_LATE)
        # The thread sets this future from the loop (_deliver): the waiter runs on the very next
        # turn of the loop, which matters, since the lock is held from the grant on.
        waiter = grant.waiter = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Granted just as this writer was cancelled: nobody will use it, let go.
                self._pending = None
                if grant.error is None:
                    fcntl.flock(writer, fcntl.LOCK_UN)
            if isinstance(exc, TimeoutError):
                raise DatabaseBusy(_TOO_LATE) from None
            raise
        finally:
            timer.cancel()
            grant.waiter = None
        self._pending = None
        if grant.error is not None:
            raise grant.error
        self.held = True

    def release(self) -> None:
        if self.held and self._fds is not None:
            self.held = False
            fcntl.flock(self._fds[1], fcntl.LOCK_UN)

    def _wait_in_thread(self, writer: int, queue: int, *, queued: bool) -> _Grant:
        """Hand one blocking wait to the waiting thread. At most one is ever outstanding
        (``_pending``), so the thread's waits never overlap."""
        grant = _Grant()
        loop = asyncio.get_running_loop()

        def wait() -> None:
            error: BaseException | None = None
            try:
                if not queued:
                    fcntl.flock(queue, fcntl.LOCK_EX)
                fcntl.flock(writer, fcntl.LOCK_EX)
                fcntl.flock(queue, fcntl.LOCK_UN)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: the process is going
                loop.call_soon_threadsafe(self._deliver, grant, error)

        if self._inbox is None:
            self._inbox = _start_waiting_thread()
        self._inbox.put(wait)
        return grant

    def _deliver(self, grant: _Grant, error: BaseException | None) -> None:
        """On the loop once the waiting thread got the lock (or failed): to the writer waiting
        for it, or, when nobody waits any more (deadline, cancellation), let go at once."""
        grant.error = error
        waiter = grant.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            return
        if self._pending is grant:
            self._pending = None
        if error is None and self._fds is not None:
            fcntl.flock(self._fds[1], fcntl.LOCK_UN)


_TOO_LATE = "another process held the database's write lock past this write's deadline"


def _start_waiting_thread() -> SimpleQueue[Callable[[], None] | None]:
    inbox: SimpleQueue[Callable[[], None] | None] = SimpleQueue()

    def serve() -> None:
        while (wait := inbox.get()) is not None:
            wait()
            del wait  # hold no loop, lock or grant while idle

    threading.Thread(target=serve, name="sqlite-write-lock", daemon=True).start()
    return inbox


class _Grant:
    """One thread's wait for the lock, and the writer (if any) waiting for its outcome."""

    __slots__ = ("error", "waiter")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WriterLine:
    """This process's writers, one at a time, in arrival order; a release wakes them *all*.

    ``asyncio.Lock`` wakes one waiter per release, and a woken task runs on the loop's next
    turn: N writers queued behind a batch took N turns to pass through it, each a few ms
    under load, all with the box's lock held (measured under the mix: a queued order waited
    76 ms at the median for its own process's earlier writers). Here a release wakes every
    waiter at once; on the next turn they run in arrival order, and as a transaction's
    statements do not suspend once its batch holds the box lock, each takes the line, runs
    its body and lets go before the next one runs: the whole queue passes in one turn. A
    writer that finds the line taken again (the one before it suspended) goes back to its
    place in line.
    """

    def __init__(self) -> None:
        self._held = False
        self._tickets = itertools.count()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        ticket = next(self._tickets)
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            bisect.insort(self._waiters, (ticket, fut), key=lambda w: w[0])
            try:
                await fut
            except BaseException:
                # Cancelled while queued; once woken it is no longer in the list.
                with contextlib.suppress(ValueError):
                    self._waiters.remove((ticket, fut))
                raise
            if not self._held:
                self._held = True
                return

    def release(self) -> None:
        assert self._held, "release of a line not held"
        self._held = False
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
