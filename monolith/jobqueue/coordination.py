"""How processes coordinate around the queue: waking the runner, and electing the one that runs.

Two small interfaces with a box-local implementation each (the PostgreSQL ones, for several
boxes, live in :mod:`.postgres`):

- :class:`Wakeup`: an enqueue anywhere tells the runners "look now", so a job starts within
  milliseconds instead of at the next poll. It is only a hint: losing one costs at most the
  runner's poll interval, never a job (the job is already committed in the table).
- :class:`Election`: exactly one process (of ``serve``'s workers and ``monolith worker``) runs
  the scheduler, so each fire is enqueued by one process (with ``MONOLITH_JOBS_RUNNERS=leader``
  it is also the only runner: :mod:`.host`). Losing the election never loses a job: leases
  make any number of runners safe.

Why UNIX datagram sockets for the box: a send is one non-blocking syscall per runner (no disk
write, no database statement per enqueue), a datagram needs no connection, no reader means the
send just fails (ENOENT/ECONNREFUSED: the socket file of a dead runner, removed then), and a
runner sleeps in the event loop on its socket instead of polling the database every 50-100 ms.
Each runner binds its own socket in the data dir's wake folder and an enqueue sends to every
socket there. A FIFO would block or fail without a reader and a wake file needs polling
(inotify is Linux-only and misses writes through other mounts).

Why ``fcntl.flock`` for the box: the kernel drops the lock the instant its holder dies (even by
kill -9), so a follower polling every ``retry`` seconds takes over within that time; no lease or
clock is involved. This module must never block the event loop for longer than a syscall.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import ClassVar

from monolith.database.base import Transaction
from monolith.files import private_dir

# sockaddr_un holds 108 bytes on Linux; a wake folder whose socket names would not fit goes
# to the temporary directory. A socket's name: "<pid>-<8 hex digits>".
_MAX_SOCKET_PATH = 100
_NAME_LEN = 7 + 1 + 8


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


def wake_dir(data_dir: Path) -> Path:
    """Where the runners of a data dir bind their wake sockets: a folder in it, or one in the
    temporary directory named after it when the path is too long for a socket address."""
    path = data_dir.absolute() / "jobs.wake.d"
    if len(str(path).encode()) + 1 + _NAME_LEN <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"monolith-jobs-{digest}"


class SocketWakeup(Wakeup):
    """UNIX datagram sockets in the data dir's wake folder: each runner binds one, an enqueue
    sends one datagram to each (a few runners on a box, so a few syscalls per commit)."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = wake_dir(data_dir)
        self.address: str | None = None
        self._sender: socket.socket | None = None
        self._receiver: socket.socket | None = None
        self._signal = WakeSignal()

    def poke(self) -> None:
        """Send one wake datagram to every runner now; none listening is not an error."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return  # no runner has ever listened here
        for name in names:
            address = str(self.folder / name)
            try:
                self._sender.sendto(b"!", address)
            except (ConnectionRefusedError, FileNotFoundError):
                # A socket left by a runner that died: nobody will read it again.
                with contextlib.suppress(OSError):
                    os.unlink(address)
            except OSError:
                pass  # EAGAIN: its buffer is full, it is awake anyway

    async def announce(self, tx: Transaction) -> None:
        tx.on_commit(self.poke)

    async def listen(self) -> None:
        if self._receiver is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        address = str(self.folder / f"{os.getpid()}-{secrets.token_hex(4)}")
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self.address = address
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
        address, self.address = self.address, None
        if address is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
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
