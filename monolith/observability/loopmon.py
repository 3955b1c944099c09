"""Event-loop lag per worker, and a warning naming the route when a handler blocks the loop.

A worker "sitting on a blocking call" (a sync HTTP client, ``time.sleep``, a big CPU loop)
stalls every request of that process. Two parts watch for it:

- a task on the loop sleeps a short tick and measures how late it wakes (the lag); the
  largest lag of the last few seconds is the ``monolith_event_loop_lag_seconds`` gauge;
- a watchdog thread notices when that task has not run for ``block_after`` seconds, i.e.
  while the loop is still blocked, and looks at the loop thread's stack: the innermost
  request in it (registered by the request middleware through :meth:`LoopMonitor.enter`)
  names the route, the innermost frame names the code. It logs one warning per block.

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
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request middleware's side -----------------------------------------------------

    def enter(self, frame: FrameType, scope: Any) -> None:
        self.requests[id(frame)] = scope

    def leave(self, frame: FrameType) -> None:
        self.requests.pop(id(frame), None)

    # -- lifecycle -------------------------------------------------------------------------

    def arm(self) -> None:
        """Start counting: called once the process has started. Start-up (imports, opening
        connections, migrations) blocks the loop by design and is neither lag nor a block."""
        self._beat = time.monotonic()
        self.armed = True

    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
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
        reported_beat = 0.0
        while not self._stop.wait(self.tick):
            beat = self._beat
            if not self.armed:
                continue
            if beat == reported_beat or time.monotonic() - beat < self.block_after:
                continue
            reported_beat = beat  # one warning per block
            try:
                self._report(time.monotonic() - beat)
            except Exception:  # noqa: S110 - a diagnostic must never take the process down
                pass

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
