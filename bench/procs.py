"""Server processes for the benchmark: start, wait until ready, sample memory, stop.

Each server runs in a process group of its own, with its output in a log file, so stopping it
stops every worker it forked and nothing else. Must never leave a server running: callers use
:func:`serving` (a context manager) or :meth:`Server.stop` in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class ServerFailed(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    """One started process group: a server, or a helper such as an arq worker."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        # SIGTERM to the main process only, as systemd's KillMode=mixed does: it stops its
        # workers itself (monolith serve drains first); SIGKILL for whatever is left after.
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        # Workers that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def spawn(
    name: str, cmd: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(cmd),
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name, popen, log)


def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 2xx; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServerFailed(
                f"{proc.name} exited with {proc.popen.returncode}:\n{log_tail(proc.log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ServerFailed(
        f"{proc.name} not ready after {timeout:.0f}s ({last}):\n{log_tail(proc.log)}"
    )


@dataclass
class Server:
    """A started system: its web server and any helper processes (job workers)."""

    url: str
    web: Proc
    helpers: list[Proc] = field(default_factory=list)
    #: Values the load scripts need: a session cookie, an admin token, an order id...
    params: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for proc in [self.web, *self.helpers]:
            proc.stop()

    def rss_roots(self) -> dict[str, list[int]]:
        return {"web": [self.web.popen.pid], "jobs": [p.popen.pid for p in self.helpers]}

    def check_alive(self) -> None:
        for proc in [self.web, *self.helpers]:
            if not proc.alive():
                raise ServerFailed(f"{proc.name} died:\n{log_tail(proc.log)}")


def cpu_seconds(roots: Sequence[int]) -> float:
    """User + system CPU seconds used so far by the processes under ``roots``."""
    total = 0.0
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                times = p.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


class RssSampler:
    """Peak resident memory of each process under some named groups of roots, sampled.

    A group's peak per worker is the largest peak among the processes below its roots (the
    workers); a root with no children is its own worker.
    """

    def __init__(self, roots: Mapping[str, Sequence[int]], interval: float = 0.2) -> None:
        self._roots = dict(roots)
        self._interval = interval
        self._peaks: dict[str, dict[int, int]] = {name: {} for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        for name, pids in self._roots.items():
            peaks = self._peaks[name]
            procs: list[psutil.Process] = []
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    procs += root.children(recursive=True) or [root]
                except psutil.Error:
                    continue
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                peaks[p.pid] = max(peaks.get(p.pid, 0), rss)

    def peak_mb(self, name: str) -> float | None:
        peaks = self._peaks.get(name)
        return round(max(peaks.values()) / 2**20, 1) if peaks else None
