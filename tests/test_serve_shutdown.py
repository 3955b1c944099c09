"""SIGTERM under load: every request whose bytes reached the server before the signal is answered.

granian alone does not guarantee this with several workers (connections queued on a worker's
listener are reset when it stops); ``monolith serve`` drains first. Each trial starts a real
``monolith serve --workers 2``, drives it with raw sockets from many threads, sends SIGTERM
while requests are in flight, and checks every request sent before the signal.
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server import ServerProcess, box_env, run_cli

# About the process's drain on SIGTERM, which no backend takes part in: it runs on the one-box
# defaults in every test profile, so the scale-out run leaves it out.
pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]

TRIALS = 4
WRK = shutil.which("wrk")
LOAD_PROCESSES = 3
CLOSE_THREADS = 32
KEEPALIVE_THREADS = 8
# SIGTERM goes once this many requests have been answered (the server is under load), then
# the load runs on for LOAD_AFTER_SIGNAL seconds; each wait has a deadline, no fixed sleep.
ANSWERED_BEFORE_SIGNAL = 300
LOAD_AFTER_SIGNAL = 1.3
DEADLINE = 60.0
# monolith promises more than the contract: for the first part of its drain phase, requests
# on connections made before the signal are still served (new ones are refused). Checking
# that window too is what tells this server apart from plain granian, which loses requests
# sent in the few milliseconds before its stop begins (measured: 22-24 losses per trial
# without the drain, 0 with it).
GRACE_AFTER_SIGNAL = 0.1


@dataclass
class Outcome:
    sent_at: float  # when the whole request had been written to the socket
    connected_at: float  # when its connection was established
    ok: bool
    error: str = ""


def _read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response (status, body, whether it says ``Connection: close``) read by
    Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} header bytes")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    closing = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"connection":
            closing = value.strip().lower() == b"close"
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"body cut at {len(body)}/{length} bytes")
        body += chunk
    return status, body, closing


# Shared by the load processes (set by the pool's initializer): answered requests, and the
# event that ends the load.
_answered: Any = None
_stop_all: Any = None


def _share(answered: Any, stop_all: Any) -> None:
    global _answered, _stop_all
    _answered, _stop_all = answered, stop_all


def _client(port: int, keepalive: bool, stop: threading.Event, out: list[Outcome]) -> None:
    conn_header = b"keep-alive" if keepalive else b"close"
    request = (
        b"GET /api/products/1 HTTP/1.1\r\nHost: test\r\nConnection: " + conn_header + b"\r\n\r\n"
    )
    sock: socket.socket | None = None
    connected_at = 0.0
    while not stop.is_set():
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                connected_at = time.monotonic()
        except OSError:
            time.sleep(0.01)  # refused during/after the stop: allowed, nothing was sent
            continue
        try:
            sock.sendall(request)
        except OSError as exc:
            out.append(Outcome(time.monotonic(), connected_at, False, f"send: {exc!r}"))
            sock.close()
            sock = None
            continue
        sent_at = time.monotonic()
        try:
            status, _, closing = _read_response(sock)
            out.append(Outcome(sent_at, connected_at, status == 200, f"status {status}"))
            if status == 200:
                with _answered.get_lock():
                    _answered.value += 1
        except (OSError, ConnectionError, ValueError, IndexError) as exc:
            out.append(Outcome(sent_at, connected_at, False, repr(exc)))
            sock.close()
            sock = None
            continue
        if not keepalive or closing:  # as HTTP says: no request after Connection: close
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def _load(port: int) -> list[tuple[float, float, bool, str]]:
    """One load process: many client threads until the shared stop event (or the deadline);
    returns every outcome."""
    stop = threading.Event()
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=_client, args=(port, i < KEEPALIVE_THREADS, stop, outcomes))
        for i in range(CLOSE_THREADS + KEEPALIVE_THREADS)
    ]
    for t in threads:
        t.start()
    _stop_all.wait(DEADLINE)
    stop.set()
    for t in threads:
        t.join(15)
    return [(o.sent_at, o.connected_at, o.ok, o.error) for o in outcomes]


def test_sigterm_under_load_answers_every_request_sent_before_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    answered, stop_all = ctx.Value("i", 0), ctx.Event()
    with ctx.Pool(LOAD_PROCESSES, initializer=_share, initargs=(answered, stop_all)) as pool:
        for trial in range(TRIALS):
            data_dir = tmp_path / f"trial{trial}" / "var"
            data_dir.mkdir(parents=True)
            env = box_env(data_dir)
            assert run_cli("seed-demo", env=env).returncode == 0
            server = ServerProcess(data_dir, workers=2, env=env).start()
            answered.value = 0
            stop_all.clear()
            try:
                pending = pool.map_async(_load, [server.port] * LOAD_PROCESSES)
                noise = (
                    subprocess.Popen(
                        [
                            WRK,
                            "-t2",
                            "-c256",
                            f"-d{int(DEADLINE)}s",
                            "-H",
                            "Connection: close",
                            f"{server.url}/api/products/2",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    if WRK
                    else None
                )
                loaded_by = time.monotonic() + DEADLINE
                while answered.value < ANSWERED_BEFORE_SIGNAL and time.monotonic() < loaded_by:
                    time.sleep(0.01)
                signalled_at = time.monotonic()
                server.send_signal(signal.SIGTERM)
                assert server.proc is not None
                code = server.proc.wait(30)
                stopped_at = time.monotonic()
                time.sleep(max(0.0, signalled_at + LOAD_AFTER_SIGNAL - time.monotonic()))
                stop_all.set()
                results = [o for part in pending.get(DEADLINE) for o in part]
                if noise is not None:
                    noise.terminate()
                    noise.wait(30)
            finally:
                server.stop()
            # Must be answered: everything sent before the signal, and what was sent in the
            # grace window on a connection that existed before the signal.
            before = [
                o
                for o in results
                if o[0] < signalled_at
                or (o[0] < signalled_at + GRACE_AFTER_SIGNAL and o[1] < signalled_at)
            ]
            lost = [o for o in before if not o[2]]
            assert len(before) >= ANSWERED_BEFORE_SIGNAL, (
                f"trial {trial}: too little load ({len(before)} requests in {DEADLINE}s)"
            )
            assert not lost, (
                f"trial {trial}: {len(lost)} of {len(before)} requests sent before SIGTERM failed, "
                f"e.g. {lost[:3]}\n{server.log_text()[-3000:]}"
            )
            assert code == 0, server.log_text()[-3000:]
            assert stopped_at - signalled_at < 20
