"""Real Caddy running the repository's Caddyfile, for tests that put it in front of the app.

Only the environment moves it out of the way: high free ports on 127.0.0.1, no admin endpoint,
``tls internal`` with its CA under a temporary XDG_DATA_HOME (and ``skip_install_trust``, in the
Caddyfile itself), so nothing binds 80/443 or touches the system trust store. Clients trust
Caddy's local root explicitly, so requests check the certificate like a browser would.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.services import free_port, require_binary

ROOT = Path(__file__).resolve().parent.parent
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


def start_caddy(workdir: Path, upstreams: list[int], data_dir: Path) -> Caddy:
    """The repository's Caddyfile in front of ``monolith serve`` on each port of ``upstreams``
    (balanced between them), serving ``data_dir``'s media, once it answers over HTTPS."""
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
        "MONOLITH_UPSTREAM": " ".join(f"127.0.0.1:{port}" for port in upstreams),
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
