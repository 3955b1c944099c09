"""Raw ASGI middleware for every request: request id, one access line, worker id header,
the HTTP metrics (count and latency by route template), the event-loop monitor's note of
which request is running, and a write request's deadline (``MONOLITH_WRITE_TIMEOUT``).

Once the worker drains (``SIGTERM`` reached ``serve``: :mod:`monolith.server`), every response
carries ``Connection: close``: a client on a keep-alive connection then sends its next
request on a new connection, to a worker that is not stopping, instead of into a connection
the stopping worker is about to close (which would leave that request without an answer).

The access line names the client by :func:`monolith.web.client_ip.client_ip`: behind Caddy,
the address Caddy saw, never an address the client wrote into ``X-Forwarded-For`` itself.

Raw ASGI (not a BaseHTTPMiddleware) because it runs on every request and the measured
budget per request is a few tens of microseconds; the metrics ride on the same pass instead
of a second middleware layer (``bench/metrics_overhead.py`` measures what they add).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from typing import TYPE_CHECKING

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from monolith.db import write_deadline
from monolith.logs import log_access, request_id_var
from monolith.web.client_ip import scope_client_ip

if TYPE_CHECKING:
    from monolith.observability.loopmon import LoopMonitor
    from monolith.observability.metrics import Metrics

#: The scope's list of headers that inner layers add to the response (see ``__call__``).
RESPONSE_HEADERS = "monolith.response_headers"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def _is_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


class RequestContextMiddleware:
    """Accepts or makes ``X-Request-ID``, echoes it, and logs one line per request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        expose_worker: bool = False,
        trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1"),
        metrics: Metrics | None = None,
        monitor: LoopMonitor | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.write_timeout = write_timeout
        self.trusted_proxies = trusted_proxies
        self.metrics = metrics
        self.monitor = monitor
        self.extra_headers: list[tuple[bytes, bytes]] = []
        #: Set when the worker drains: from then on every response closes its connection.
        self.closing = False
        if expose_worker:
            self.extra_headers.append((b"x-worker-pid", str(os.getpid()).encode()))

    def close_connections(self) -> None:
        """From now on, answer with ``Connection: close`` (the worker is draining)."""
        self.closing = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid_bytes = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid_bytes = value
                break
        # A made id is 128 random bits from the process's own generator, which the random
        # module seeds anew in every forked worker: os.urandom is a system call per request,
        # and under load those cost several µs each (docs/BENCHMARKS.md, "The hot paths").
        # An id names a request in the logs; it is no secret.
        rid = (
            rid_bytes.decode()
            if rid_bytes and _VALID_ID.match(rid_bytes)
            else f"{random.getrandbits(128):032x}"
        )
        token = request_id_var.set(rid)
        deadline = None
        if self.write_timeout and scope.get("method") in _WRITES:
            # One deadline for the whole write request (MONOLITH_WRITE_TIMEOUT), from now.
            deadline = write_deadline.set(asyncio.get_running_loop().time() + self.write_timeout)
        rid_header = (b"x-request-id", rid.encode())
        # Inner layers add response headers here instead of wrapping ``send`` again (the rate
        # limiter's): one wrapper per request on the hot path.
        added: list[tuple[bytes, bytes]] = []
        scope[RESPONSE_HEADERS] = added  # type: ignore[literal-required]
        status = 0
        counted = self.metrics is None or kind != "http"
        started = time.perf_counter()

        def count(seconds: float) -> None:
            nonlocal counted
            counted = True
            # Unrouted paths share one label: a raw path would let clients mint series.
            self.metrics.observe_request(  # type: ignore[union-attr]
                scope.get("path_template") or "unmatched", scope.get("method", ""), status, seconds
            )

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not counted and _is_stream(headers):
                    # A live stream lasts minutes: its latency is the time to its headers.
                    count(time.perf_counter() - started)
                headers.extend(added)
                headers.append(rid_header)
                headers.extend(self.extra_headers)
                if self.closing:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            elif (
                not counted
                and message["type"] == "http.response.body"
                and not message.get("more_body")
            ):
                # Counted before the last byte leaves: a client that has its answer and then
                # scrapes /metrics finds its request already counted.
                count(time.perf_counter() - started)
            await send(message)

        monitor = self.monitor
        # The frame's id, not the frame: a frame in its own locals would be a cycle.
        entered = None if monitor is None else monitor.enter(sys._getframe(), scope)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            if entered is not None:
                monitor.leave(entered)  # type: ignore[union-attr]
            status = status or (500 if kind == "http" else 101)
            if not counted:  # no complete response (the client left, or the app failed)
                count(seconds)
            log_access(
                str(scope.get("method", "WS")),
                scope.get("path_template") or scope["path"],
                status,
                round(seconds * 1000, 3),
                scope_client_ip(scope, self.trusted_proxies),
            )
            request_id_var.reset(token)
            if deadline is not None:
                write_deadline.reset(deadline)
