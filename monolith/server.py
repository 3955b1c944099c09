"""``monolith serve``: granian with a drain phase before it stops.

Measured with granian 2.8 and several workers: on SIGTERM, requests granian has read always
finish, but connections accepted and not yet read are closed, and the kernel resets the
connections still queued on each worker's own ``SO_REUSEPORT`` listener. So a stop here has
two phases:

1. Drain (``DRAIN_SECONDS``): the serve process tells every worker (``SIGUSR1``) to attach a
   drop-everything socket filter to its listening socket. New connection attempts get no
   answer (the client retries its SYN, and by then meets a closed port: refused; behind Caddy,
   ``lb_try_duration`` retries it), while connections already queued are still accepted and
   served, because a filter attached now is not inherited by children created before it.
2. Stop: granian's own graceful stop; in-flight requests finish within ``graceful_timeout``
   (``workers_kill_timeout``), which is below systemd's ``TimeoutStopSec``.

``SIGUSR1`` is ignored in the serve process before workers are spawned, so a worker that
has not installed its handler yet ignores it instead of dying.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monolith.logs import get_logger

DRAIN_SIGNAL = signal.SIGUSR1
DRAIN_SECONDS = 0.3

SOL_SOCKET = socket.SOL_SOCKET
SO_ATTACH_FILTER = 26
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: "accept 0 bytes", i.e. drop the packet

log = get_logger("monolith.server")


def _drop_all_filter() -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    program = ctypes.create_string_buffer(struct.pack("HBBI", _BPF_RET_K, 0, 0, 0))
    fprog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(program))
    return fprog, program


def listening_sockets() -> list[int]:
    """The file descriptors of this process's listening TCP sockets."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not Path(f"/proc/self/fd/{name}").readlink().name.startswith("socket:"):
                continue
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockopt(
                SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                found.append(fd)
        finally:
            sock.close()
    return found


def drain_listeners() -> int:
    """Stop this process's listeners from taking new connections; returns how many."""
    fprog, program = _drop_all_filter()
    drained = 0
    for fd in listening_sockets():
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            drained += 1
        except OSError as exc:
            log.warning("could not drain a listener", error=str(exc))
        finally:
            sock.close()
    del program
    log.info("draining: refusing new connections", listeners=drained)
    return drained


def install_drain_handler(*also: Callable[[], object]) -> None:
    """In a worker: drain the listeners on ``SIGUSR1`` (a no-op outside the main thread).

    ``also`` run after the listeners are drained: e.g. ending long-lived event streams, whose
    clients then reconnect to a worker that is not stopping.
    """
    import asyncio

    def drain() -> None:
        drain_listeners()
        for callback in also:
            callback()

    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(DRAIN_SIGNAL, drain)
        # Ctrl+C reaches the whole process group; a worker that stopped on its own would be
        # reported as crashed ("Unexpected exit") and respawned. The serve process stops the
        # workers in order instead.
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (RuntimeError, ValueError, NotImplementedError):
        pass  # not the main thread (tests) or no signals here: nothing to drain


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    graceful_timeout: int,
    log_level: str = "info",
    on_respawn: Callable[[list[int]], None] | None = None,
    reload: bool = False,
) -> None:
    """Run granian (ASGI, lifespan) with the drain phase; returns when it has stopped.

    ``on_respawn(old_pids)`` is called after granian has replaced workers that exited (or
    that it recycled), so their metrics can be retired and the restart counted.
    """
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    def tell_to_drain(worker: Any) -> None:
        pid = getattr(getattr(worker, "inner", None), "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, DRAIN_SIGNAL)

    class DrainingServer(Server):  # type: ignore[misc,valid-type]
        draining = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if args and args[0] == signal.SIGINT and not self.draining:
                # Ctrl+C at a terminal: one line, a stop without the drain (no traffic to
                # protect at a developer's desk), and granian's stop lines left out.
                self.draining = True
                logging.getLogger("_granian").setLevel(logging.WARNING)
                print("monolith serve: stopping (Ctrl+C)", file=sys.stderr, flush=True)
                super().signal_handler_interrupt(*args, **kwargs)
                return
            if self.draining:  # a second signal: stop now
                super().signal_handler_interrupt(*args, **kwargs)
                return
            self.draining = True
            for worker in list(self.wrks):
                tell_to_drain(worker)
            timer = threading.Timer(DRAIN_SECONDS, super().signal_handler_interrupt)
            timer.daemon = True
            timer.start()

        def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> Any:
            # granian's (private) respawn step: the one place that sees old and new workers.
            old = [getattr(getattr(self.wrks[i], "inner", None), "pid", None) for i in workers]
            result = super()._respawn_workers(workers, *args, **kwargs)
            if on_respawn is not None:
                try:
                    on_respawn([pid for pid in old if pid])
                except Exception as exc:
                    log.warning("after respawn", error=repr(exc))
            return result

        def _spawn_worker(self, *args: Any, **kwargs: Any) -> Any:
            # A worker stopped on its own (SIGHUP's rolling respawn, a lifetime or memory
            # limit) drains first too; on a full stop the whole server already drained.
            worker = super()._spawn_worker(*args, **kwargs)
            terminate = worker.terminate

            def drain_then_terminate() -> None:
                if not self.draining:
                    tell_to_drain(worker)
                    time.sleep(DRAIN_SECONDS)
                terminate()

            worker.terminate = drain_then_terminate
            return worker

    signal.signal(DRAIN_SIGNAL, signal.SIG_IGN)  # inherited by workers until they handle it
    server = DrainingServer(
        "monolith.asgi:app_factory",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        workers_kill_timeout=graceful_timeout,
        respawn_failed_workers=not reload,
        reload=reload,  # watches the current folder (the repository's root under `make run`)
        log_level=LogLevels(log_level),
        process_name="monolith",
    )
    server.serve()
