"""What the harness needs from each system it measures.

A system is started once per round and variant (``default``, ``cache_off``, ``sync_full``),
measured on every case it supports, and stopped. ``setup``/``teardown`` bracket the whole
bench run (databases, Redis keys). Anything a system cannot do yet is reported as "not
available" with a reason, never a crash.
"""

from __future__ import annotations

import abc
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Server, free_port, spawn, wait_http


class NotAvailable(Exception):
    """This system (or this case on it) cannot be measured; the message says why."""


@dataclass(frozen=True)
class RunContext:
    workdir: Path
    workers: int = 2
    products: int = 100


class System(abc.ABC):
    key: str
    label: str
    #: Variants this system can be started in (others are "not available" on it).
    variants: tuple[str, ...] = ("default",)
    #: Whether it runs background jobs (the jobs case).
    has_jobs: bool = False

    def setup(self, ctx: RunContext) -> None:  # noqa: B027 - an optional hook
        """Once per bench run, before any start: check requirements, create databases."""

    def teardown(self) -> None:  # noqa: B027 - an optional hook
        """Once per bench run, always: drop what setup created."""

    @abc.abstractmethod
    def start(self, variant: str, ctx: RunContext) -> Server:
        """Start and wait until ready, with ``params`` filled for the load scripts."""

    def jobs_per_second(self, server: Server, count: int) -> float:
        """Enqueue ``count`` no-op jobs and time them to completion."""
        raise NotAvailable("no job queue")


class GranianApp(System):
    """An ASGI app object served by granian with the bench's worker count."""

    target: str

    def start(self, variant: str, ctx: RunContext) -> Server:
        port = free_port()
        cmd = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(ctx.workers), self.target,
        ]  # fmt: skip
        proc = spawn(self.key, cmd, {}, ctx.workdir / f"{self.key}.log")
        server = Server(f"http://127.0.0.1:{port}", proc)
        try:
            wait_http(proc, server.url + "/health/ready")
        except BaseException:
            server.stop()
            raise
        server.params = {"cookie": "session=none", "admin": "Bearer none", "oid": "1"}
        return server


class Ceiling(GranianApp):
    key = "ceiling"
    label = "bare ASGI (ceiling)"
    target = "bench.peers.ceiling:app"


class Hello(GranianApp):
    key = "hello"
    label = "Litestar hello"
    target = "bench.peers.hello:app"
