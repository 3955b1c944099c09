"""Event-loop lag per worker, and a warning naming the route when a handler blocks the loop.

A worker "sitting on a blocking call" (a sync HTTP client, ``time.sleep``, a big CPU loop)
stalls every request of that process. Two parts watch for it:

- a task on the loop sleeps a short tick and measures how late it wakes (the lag); the
  largest lag of the last few seconds is the ``monolith_event_loop_lag_seconds`` gauge;
- a watchdog thread notices when that task has not run for ``block_after`` seconds, i.e.
  while the loop is still blocked, and looks at the loop thread's stack: the innermost
  request in it (registered by the request middleware through :meth:`LoopMonitor.enter`)
  names the route, the innermost frame names the code. It logs one warning per block.

A late beat is not always the loop's own doing: on a busy box the loop thread may wait for a
CPU, and a stopped or frozen process (SIGSTOP, a paused VM) runs no thread at all. Neither is
code holding the loop, and a warning naming whatever line happened to be current would send
its reader after innocent code. So the watchdog asks the kernel about the loop thread (Linux:
its CPU time, and whether it sleeps in a call) and holds its warning while the loop thread is
runnable but not running, or while the watchdog itself was kept from running and the loop
thread was not busy meanwhile; it looks again at its next tick, and a block that goes on is
reported then.

The watchdog reads other threads' frames (as a sampling profiler does) and never touches
the loop. Neither part may raise into the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from monolith.logs import get_logger

log = get_logger("monolith.loop")

#: Paths are shown from the project root (``monolith/web/x.py``), not from the working directory.
_PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + "/"
_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _location(frame: FrameType) -> str:
    """The innermost frame of our own code (not the standard library, not a dependency)."""
    chosen = frame
    f: FrameType | None = frame
    while f is not None:
        if not f.f_code.co_filename.startswith(_LIBRARY_DIRS):
            chosen = f
            break
        f = f.f_back
    code = chosen.f_code
    path = code.co_filename
    if path.startswith(_PROJECT_DIR):
        path = path[len(_PROJECT_DIR) :]
    return f"{path}:{chosen.f_lineno} in {code.co_name}"


class LoopMonitor:
    """Watches one event loop; start it on that loop, stop it before the loop closes."""

    def __init__(
        self,
        *,
        block_after: float = 0.1,
        tick: float = 0.05,
        window: float = 5.0,
        on_lag: Callable[[float], None] | None = None,
        on_block: Callable[[str], None] | None = None,
    ) -> None:
        self.block_after = block_after
        self.tick = min(tick, block_after / 2)
        self.window = window
        self.on_lag = on_lag
        self.on_block = on_block
        #: Requests in progress on this loop: id of the middleware's frame -> its scope.
        self.requests: dict[int, Any] = {}
        self.max_lag = 0.0
        #: Counting; a process sets it False while it starts, then calls :meth:`arm`.
        self.armed = True
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._loop_native = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request middleware's side -----------------------------------------------------

    def enter(self, frame: FrameType, scope: Any) -> int:
        """Register the request running in ``frame``; pass what it returns to :meth:`leave`.

        Only the frame's id is kept, by the monitor and by the caller: a coroutine that holds
        its own frame in a local is a reference cycle, garbage for the collector to find after
        every request (measured: 28 objects a request, most of the worker's collections).
        """
        key = id(frame)
        self.requests[key] = scope
        return key

    def leave(self, key: int) -> None:
        self.requests.pop(key, None)

    # -- lifecycle -------------------------------------------------------------------------

    def arm(self) -> None:
        """Start counting: called once the process has started. Start-up (imports, opening
        connections, migrations) blocks the loop by design and is neither lag nor a block."""
        self._beat = time.monotonic()
        self.armed = True

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._loop_native = threading.get_native_id()
        self._beat = time.monotonic()
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._ticker(), name="loop-monitor")
        self._thread = threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 1.0)

    # -- the loop's side -------------------------------------------------------------------

    async def _ticker(self) -> None:
        window_started = time.monotonic()
        worst = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self._beat = now
            if not self.armed:
                window_started = now
                continue
            worst = max(worst, now - before - self.tick)
            if now - window_started >= self.window:
                self.max_lag = worst
                if self.on_lag is not None:
                    self.on_lag(worst)
                worst, window_started = 0.0, now

    # -- the watchdog thread ---------------------------------------------------------------

    def _watchdog(self) -> None:
        thread = _ThreadLook(self._loop_thread, self._loop_native)
        reported_beat = 0.0
        woke = time.monotonic()
        seen = thread.look()
        try:
            while not self._stop.wait(self.tick):
                now = time.monotonic()
                interval, woke = now - woke, now
                look, before = thread.look(), seen
                seen = look
                beat = self._beat
                if not self.armed:
                    continue
                if beat == reported_beat or now - beat < self.block_after:
                    continue
                if not _held(look, before, interval, self.tick):
                    continue  # not the loop's code: look again at the next tick
                reported_beat = beat  # one warning per block
                try:
                    self._report(now - beat)
                except Exception:  # noqa: S110 - a diagnostic must never take the process down
                    pass
        finally:
            thread.close()

    def _report(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return
        route = None
        f: FrameType | None = frame
        while f is not None:
            scope = self.requests.get(id(f))
            if scope is not None:
                route = scope.get("path_template") or "unmatched"
                break
            f = f.f_back
        log.warning(
            "event loop blocked",
            route=route,
            blocked_ms=round(blocked * 1000),
            where=_location(frame),
            pid=os.getpid(),
        )
        if self.on_block is not None:
            self.on_block(route or "none")


class _ThreadLook:
    """Another thread as the kernel sees it: its CPU seconds so far, and whether it sleeps in
    a call (Linux ``/proc``; elsewhere only what the watchdog's own timing says)."""

    def __init__(self, ident: int, native_id: int) -> None:
        self._clock: int | None = None
        self._stat = -1
        with contextlib.suppress(AttributeError, OSError):
            self._clock = time.pthread_getcpuclockid(ident)
        with contextlib.suppress(OSError):
            self._stat = os.open(f"/proc/self/task/{native_id}/stat", os.O_RDONLY)

    def look(self) -> tuple[float, bool] | None:
        """``(CPU seconds, sleeping in a call)``, or None where the kernel does not say."""
        if self._clock is None or self._stat < 0:
            return None
        try:
            cpu = time.clock_gettime(self._clock)
            state = os.pread(self._stat, 512, 0).rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return cpu, state in (b"S", b"D")

    def close(self) -> None:
        if self._stat >= 0:
            os.close(self._stat)
            self._stat = -1


def _held(
    look: tuple[float, bool] | None,
    before: tuple[float, bool] | None,
    interval: float,
    tick: float,
) -> bool:
    """Whether a late beat is code holding the loop, judged on the watchdog's last interval.

    - The watchdog itself woke late (it slept ``interval`` for a ``tick``): the process was
      off the CPU, or a C call held the GIL. Held only if the loop thread was busy for most
      of that time (the C call); a stopped or starved process is not.
    - It woke in time: held if the loop thread sleeps in a call (``time.sleep``, a blocking
      socket) or ran; a thread that is runnable but barely ran waits for a CPU.
    """
    cpu = None if look is None or before is None else look[0] - before[0]
    if interval > 2 * tick:
        return cpu is not None and cpu >= interval / 2
    if look is None or cpu is None:
        return True
    return look[1] or cpu >= tick / 4
