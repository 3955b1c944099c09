"""The shipped Caddyfile in front of real ``monolith serve --workers 2``, over real HTTPS.

Debian's Caddy runs the repository's Caddyfile unchanged (:mod:`tests.caddy` says how it is
kept out of the machine's way); the client checks Caddy's certificate like a browser would.
"""

from __future__ import annotations

import gzip
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.caddy import CLIENT_ADDRESS, Caddy, start_caddy, stop_caddy
from tests.server import ADMIN_TOKEN, ServerProcess, box_env, run_cli
from tests.services import require_binary

# About the Caddyfile in front of the app, not the app's backends: it runs on the one-box
# defaults in every test profile (test_two_instances.py puts Caddy in front of PostgreSQL and
# Redis), so the scale-out run leaves it out.
pytestmark = [pytest.mark.caddy, pytest.mark.slow, pytest.mark.profile_independent]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Stack:
    caddy: Caddy
    data_dir: Path
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def server(self) -> ServerProcess:
        return self.servers[-1]

    def app_log_lines(self) -> list[dict[str, object]]:
        lines = []
        for server in self.servers:
            for raw in server.log_text().splitlines():
                if raw.startswith("{"):
                    lines.append(json.loads(raw))
        return lines


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("caddy", "caddy")
    workdir = tmp_path_factory.mktemp("caddy")
    data_dir = workdir / "var"
    data_dir.mkdir()
    seeded = run_cli("seed-demo", env=box_env(data_dir))
    assert seeded.returncode == 0, seeded.stderr
    server = ServerProcess(data_dir, workers=2, env=box_env(data_dir)).start()
    try:
        caddy = start_caddy(workdir, [server.port], data_dir)
    except BaseException:
        server.stop()
        raise
    stack = Stack(caddy, data_dir, [server])
    try:
        yield stack
    finally:
        stop_caddy(caddy)
        stack.server.stop()


SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "server" not in response.headers


def test_a_product_page_over_https_with_compression_and_security_headers(stack: Stack) -> None:
    with stack.caddy.client() as client:
        page = client.get(
            "/api/products", params={"limit": 20}, headers={"Accept-Encoding": "gzip"}
        )
        assert page.status_code == 200
        assert page.headers["content-encoding"] == "gzip"
        assert page.http_version in ("HTTP/1.1", "HTTP/2")
        items = page.json()["items"]
        assert len(items) == 20
        assert_security_headers(page)

        one = client.get(f"/api/products/{items[0]['id']}")
        assert one.status_code == 200
        assert one.json()["name"] == items[0]["name"]

        plain = client.get(
            "/api/products", params={"limit": 20}, headers={"Accept-Encoding": "identity"}
        )
        assert "content-encoding" not in plain.headers
        assert len(gzip.compress(plain.content)) < len(plain.content)

        missing = client.get("/api/products/999999")
        assert missing.status_code == 404
        assert_security_headers(missing)


def test_an_oversized_body_gets_413_and_never_reaches_the_app(stack: Stack) -> None:
    marker = f"too-large-{time.time_ns()}"
    with stack.caddy.client() as client:
        response = client.post(
            "/api/products",
            content=b"x" * 11_000_000,
            headers={**ADMIN, "Content-Type": "application/json", "X-Request-ID": marker},
        )
    assert response.status_code == 413
    assert not [line for line in stack.app_log_lines() if line.get("request_id") == marker]


def test_metrics_are_refused_from_outside(stack: Stack) -> None:
    with stack.caddy.client() as client:
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers=ADMIN).status_code == 403
        assert client.get("/metrics/").status_code == 403


def test_media_files_are_served_by_caddy_from_the_data_dir(stack: Stack) -> None:
    media = stack.data_dir / "media"
    media.mkdir(exist_ok=True)
    (media / "abc123.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPimage-bytes")
    with stack.caddy.client() as client:
        found = client.get("/media/abc123.webp", headers={"X-Request-ID": "media-request"})
        assert found.status_code == 200
        assert found.content == b"RIFF\x00\x00\x00\x00WEBPimage-bytes"
        assert found.headers["content-type"] == "image/webp"
        assert_security_headers(found)
        assert client.get("/media/../monolith.db").status_code == 404
        assert client.get("/media/nothing-here").status_code == 404
        # A file the storage is still writing (a dot-file) is never served.
        (media / ".abc124.webp.0123.tmp").write_bytes(b"RIFF half")
        assert client.get("/media/.abc124.webp.0123.tmp").status_code == 404
    assert not [line for line in stack.app_log_lines() if line.get("request_id") == "media-request"]


def test_the_app_logs_the_client_address_caddy_saw_not_one_the_client_claims(stack: Stack) -> None:
    marker = f"who-{time.time_ns()}"
    with stack.caddy.client() as client:
        response = client.get(
            "/api/products",
            params={"limit": 1},
            headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": marker},
        )
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while not (lines := [x for x in stack.app_log_lines() if x.get("request_id") == marker]):
        assert time.monotonic() < deadline, "the request left no line in the app's log"
        time.sleep(0.05)
    assert lines[0]["client"] == CLIENT_ADDRESS
    # Caddy's own access log is JSON and names the same client.
    entries = [json.loads(raw) for raw in stack.caddy.access_log.read_text().splitlines()]
    mine = [e for e in entries if e["request"]["headers"].get("X-Request-Id") == [marker]]
    assert mine, "the request is not in Caddy's access log"
    assert mine[0]["request"]["remote_ip"] == CLIENT_ADDRESS


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    during_restart: int = 0


def test_restarting_the_app_under_load_fails_no_request(stack: Stack) -> None:
    stop = threading.Event()
    down = threading.Event()  # set while the old server is stopping and the new one starting
    result = LoadResult()
    lock = threading.Lock()

    def load() -> None:
        with stack.caddy.client() as client:
            n = 0
            while not stop.is_set():
                n += 1
                path = f"/api/products/{n % 100 + 1}" if n % 2 else "/api/products?limit=5"
                was_down = down.is_set()
                try:
                    response = client.get(path)
                    outcome = (
                        "" if response.status_code == 200 else f"{path}: {response.status_code}"
                    )
                except httpx.HTTPError as exc:
                    outcome = f"{path}: {exc!r}"
                with lock:
                    if outcome:
                        result.failures.append(outcome)
                    else:
                        result.ok += 1
                        result.during_restart += was_down

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        old = stack.server
        down.set()
        # What `systemctl restart` does with KillMode=mixed: SIGTERM to the main process, wait,
        # then start it again.
        assert old.stop(signal.SIGTERM) == 0, old.log_text()[-3000:]
        new = ServerProcess(stack.data_dir, workers=2, port=old.port, env=old.env)
        stack.servers.append(new)
        new.start()
        down.clear()
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
    assert result.failures == []
    assert result.during_restart > 0, "no request was sent while the app restarted"
    assert result.ok > result.during_restart
