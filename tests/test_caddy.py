"""The shipped Caddyfile in front of real ``monolith serve --workers 2``, over real HTTPS.

Debian's Caddy runs the repository's Caddyfile unchanged; only the environment moves it out of
the way: high free ports on 127.0.0.1, no admin endpoint, ``tls internal`` with its CA under a
temporary XDG_DATA_HOME (and ``skip_install_trust``, in the Caddyfile itself), so nothing here
binds 80/443 or touches the system trust store. The client trusts Caddy's local root
explicitly, so these requests check the certificate like a browser would.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env, run_cli
from tests.services import free_port, require_binary

pytestmark = [pytest.mark.caddy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: A second loopback address for the client, so that "the client's address" (127.0.0.2) and
#: "Caddy's address, as the app sees it" (127.0.0.1) differ.
CLIENT_ADDRESS = "127.0.0.2"


@dataclass
class Caddy:
    proc: subprocess.Popen[bytes]
    https_port: int
    root_cert: Path
    access_log: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def client(self, **options: object) -> httpx.Client:
        trust = ssl.create_default_context(cafile=str(self.root_cert))
        transport = httpx.HTTPTransport(verify=trust, local_address=CLIENT_ADDRESS, retries=0)
        return httpx.Client(base_url=self.url, transport=transport, timeout=60, **options)  # type: ignore[arg-type]


def start_caddy(workdir: Path, upstream_port: int, data_dir: Path) -> Caddy:
    binary = require_binary("caddy", "caddy")
    https_port, http_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "XDG_DATA_HOME": str(workdir / "data"),
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "CADDY_ADMIN": "off",
        "CADDY_HTTP_PORT": str(http_port),
        "CADDY_HTTPS_PORT": str(https_port),
        "CADDY_BIND": "127.0.0.1",
        "CADDY_ACCESS_LOG": str(workdir / "access.log"),
        "MONOLITH_DOMAIN": "localhost",
        "MONOLITH_TLS": "internal",
        "MONOLITH_UPSTREAM": f"127.0.0.1:{upstream_port}",
        "MONOLITH_DATA_DIR": str(data_dir),
    }
    log = (workdir / "caddy.log").open("ab")
    proc = subprocess.Popen(
        [binary, "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    caddy = Caddy(
        proc,
        https_port,
        workdir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt",
        workdir / "access.log",
    )
    try:
        wait_until_serving(caddy, workdir / "caddy.log")
    except BaseException:
        stop_caddy(caddy)
        raise
    return caddy


def wait_until_serving(caddy: Caddy, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert caddy.proc.poll() is None, log.read_text()
        if caddy.root_cert.exists():
            try:
                with caddy.client() as client:
                    if client.get("/health/live").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def stop_caddy(caddy: Caddy) -> None:
    caddy.proc.send_signal(signal.SIGTERM)
    try:
        caddy.proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(caddy.proc.pid, signal.SIGKILL)
        caddy.proc.wait(10)


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
    seeded = run_cli("seed-demo", env=base_env(data_dir))
    assert seeded.returncode == 0, seeded.stderr
    server = ServerProcess(data_dir, workers=2).start()
    try:
        caddy = start_caddy(workdir, server.port, data_dir)
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
        new = ServerProcess(stack.data_dir, workers=2, port=old.port)
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
