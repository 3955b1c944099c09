"""How processes coordinate around the queue: waking the runner, and electing the one that runs.

Two small interfaces with a box-local implementation each (the PostgreSQL ones, for several
boxes, live in :mod:`.postgres`):

- :class:`Wakeup`: an enqueue anywhere tells the runner "look now", so a job starts within
  milliseconds instead of at the next poll. It is only a hint: losing one costs at most the
  runner's poll interval, never a job (the job is already committed in the table).
- :class:`Election`: exactly one process (of ``serve``'s workers and ``monolith worker``) runs
  the runner and the scheduler. Losing the election never loses a job either: leases make two
  runners safe; the election keeps the scheduler single and the work in one place.

Why a UNIX datagram socket for the box: a send is one non-blocking syscall (no disk write, no
database statement per enqueue), a datagram needs no connection, no reader means the send just
fails (ENOENT/ECONNREFUSED) and is ignored, and the runner sleeps in the event loop on the
socket instead of polling the database every 50-100 ms in every idle process. A FIFO would
block or fail without a reader and a wake file needs polling (inotify is Linux-only and misses
writes through other mounts).

Why ``fcntl.flock`` for the box: the kernel drops the lock the instant its holder dies (even by
kill -9), so a follower polling every ``retry`` seconds takes over within that time; no lease or
clock is involved. This module must never block the event loop for longer than a syscall.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import socket
from pathlib import Path
from typing import ClassVar

from monolith.database.base import Transaction
from monolith.files import private_dir

# sockaddr_un holds 108 bytes on Linux; longer data-dir paths use the abstract namespace.
_MAX_SOCKET_PATH = 100


class Wakeup(abc.ABC):
    """A best-effort "jobs were added" signal from any process to the runner."""

    @abc.abstractmethod
    async def announce(self, tx: Transaction) -> None:
        """Arrange for the runner to be woken when ``tx`` commits (never raises, never blocks)."""

    @abc.abstractmethod
    async def listen(self) -> None:
        """Start receiving signals (the runner's process only)."""

    @abc.abstractmethod
    async def wait(self, within: float) -> bool:
        """Sleep until a signal arrives or ``within`` seconds pass; True when signalled."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving and release what :meth:`listen` opened."""


class Election(abc.ABC):
    """Leadership among the processes that could run jobs."""

    #: Who competes: the processes of one box, or of every box (for ``doctor``).
    scope: ClassVar[str]

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the leadership is held, in one line."""

    @abc.abstractmethod
    async def try_acquire(self) -> bool:
        """Become the leader if nobody is; True when this process now leads."""

    @abc.abstractmethod
    async def holding(self) -> bool:
        """Whether this process still leads (False after its lock was lost)."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Step down so another process can lead. Idempotent."""


class WakeSignal:
    """An asyncio event that :meth:`wait` consumes, shared by the wakeup implementations."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, within: float) -> bool:
        if within > 0 and not self.event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), within)
        woken = self.event.is_set()
        self.event.clear()
        return woken


def socket_address(data_dir: Path) -> str:
    """The wake socket of a data dir: a file in it, or an abstract name when the path is long."""
    path = str(data_dir.absolute() / "jobs.wake")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0monolith-jobs-{digest}"


class SocketWakeup(Wakeup):
    """A UNIX datagram socket named after the data dir; the runner binds it, enqueuers send."""

    def __init__(self, data_dir: Path) -> None:
        self.address = socket_address(data_dir)
        self._sender: socket.socket | None = None
        self._receiver: socket.socket | None = None
        self._signal = WakeSignal()

    def poke(self) -> None:
        """Send one wake datagram now; a missing or busy runner is not an error."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        # ENOENT/ECONNREFUSED: no runner; EAGAIN: its buffer is full, it is awake anyway.
        with contextlib.suppress(OSError):
            self._sender.sendto(b"!", self.address)

    async def announce(self, tx: Transaction) -> None:
        tx.on_commit(self.poke)

    async def listen(self) -> None:
        if self._receiver is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(self.address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or self.address.startswith("\0"):
                sock.close()
                raise
            # A socket file left by a runner that died: we lead now, so it is ours to replace.
            os.unlink(self.address)
            sock.bind(self.address)
        self._receiver = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)

    def _drain(self) -> None:
        assert self._receiver is not None
        with contextlib.suppress(BlockingIOError):
            while True:
                self._receiver.recv(64)
        self._signal.event.set()

    async def wait(self, within: float) -> bool:
        return await self._signal.wait(within)

    async def close(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            asyncio.get_running_loop().remove_reader(receiver.fileno())
            receiver.close()
            if not self.address.startswith("\0"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()


class FileLockElection(Election):
    """Leadership is an exclusive ``flock`` on ``<data dir>/jobs.leader``, held while alive."""

    scope = "box"

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "jobs.leader"
        self._fd: int | None = None

    def describe(self) -> str:
        return f"a lock on {self.path}"

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who leads, for people reading the data dir; the lock itself is what counts.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def holding(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
