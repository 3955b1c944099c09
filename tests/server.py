"""Real ``monolith serve`` / ``monolith worker`` processes for tests about processes.

A test gets a process with its own data dir and free port, waits until it answers
``/health/ready``, and stops it with a real signal. Output goes to a log file the test can
read (``ServerProcess.log_text()``), which is also printed when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.services import free_port

ADMIN_TOKEN = "test-admin-token"
NO_RATE_LIMITS = "login=0/minute,signup=0/minute,orders=0/minute,api=0/minute"


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a test server: its own data dir, JSON logs, an admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONOLITH_")}
    env.update(
        MONOLITH_ENV="test",
        MONOLITH_DATA_DIR=str(data_dir),
        MONOLITH_LOG_FORMAT="json",
        MONOLITH_ADMIN_TOKEN=ADMIN_TOKEN,
        MONOLITH_SECRET_KEY="test-secret-key-" + "x" * 32,
        # No rate limits unless a test sets them: load tests come from one address.
        MONOLITH_RATE_LIMITS=NO_RATE_LIMITS,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def monolith_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monolith", *args]


def run_cli(
    *args: str, env: Mapping[str, str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        monolith_cmd(*args),
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServerProcess:
    """One ``monolith <command>`` process (``serve`` by default)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 2,
        command: tuple[str, ...] = ("serve",),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.workers = workers
        self.command = command
        self.env = dict(env) if env is not None else base_env(data_dir)
        self.log_path = data_dir.parent / f"{'-'.join(command)}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 30) -> ServerProcess:
        args = list(self.command)
        if self.command[0] == "serve":
            args += ["--port", str(self.port), "--workers", str(self.workers)]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            monolith_cmd(*args),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait and self.command[0] == "serve":
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                r = httpx.get(f"{self.url}/health/ready", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s ({last}):\n{self.log_text()}")

    def worker_pids(self) -> set[int]:
        """The pids of the serve process's children (granian workers)."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except FileNotFoundError:
            return set()
        return {int(p) for p in children.split()}

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait; kills the whole process group if it does not exit."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Reap anything the process left behind in its group (workers after a kill -9).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        """kill -9 the whole process group: a crash, nothing gets to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
