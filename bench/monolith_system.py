"""``monolith serve`` as shipped: production settings, logs, metrics, rate limits, sessions.

Rate limits are raised so the load generator is never refused, but every request still goes
through the limiter. Setup loads the catalog through the admin API, signs a user up and in
(the session cookie the load scripts send), places one order (the mix's "own order" read),
and finds out which routes exist yet: anything missing makes its cases "not available".
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.catalog import products
from bench.procs import Proc, Server, ServerFailed, free_port, log_tail, spawn, wait_http
from bench.system import NotAvailable, RunContext, System
from monolith.replication.status import STATUS_FILE
from tests.litestream import fetch as fetch_litestream

HUGE = 1_000_000_000
RATE_LIMITS = f"login={HUGE}/minute,signup={HUGE}/minute,orders={HUGE}/minute,api={HUGE}/minute"
VARIANT_ENV = {
    "default": {},
    "cache_off": {"MONOLITH_CACHE_PRODUCTS": "off"},
    "sync_full": {"MONOLITH_SQLITE_SYNCHRONOUS": "full"},
    "replicated": {},  # plus MONOLITH_REPLICA_URL and a `monolith replicate` beside serve
}


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monolith", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class Monolith(System):
    key = "monolith"
    label = "monolith serve"
    variants = ("default", "cache_off", "sync_full", "replicated")
    has_jobs = False  # set by setup when the job queue is there

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.data_dir = Path()
        self.params: dict[str, str] = {}
        self.missing: dict[str, str] = {}  # case key -> why it cannot run here
        #: Whether orders exist; until they do, the write cases create products instead.
        self.orders = True

    def setup(self, ctx: RunContext) -> None:
        if _cli("serve", "--help", timeout=60).returncode != 0:
            raise NotAvailable("`monolith serve` is not there yet")
        data = self.data_dir = ctx.workdir / "monolith-var"
        data.mkdir(parents=True, exist_ok=True)
        self.env = {
            "MONOLITH_ENV": "production",
            "MONOLITH_DATA_DIR": str(data),
            "MONOLITH_SECRET_KEY": secrets.token_urlsafe(48),
            "MONOLITH_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "MONOLITH_RATE_LIMITS": RATE_LIMITS,
            "MONOLITH_LOG_FORMAT": "json",
            "MONOLITH_WORKERS": str(ctx.workers),
        }
        migrated = _cli("migrate", env=self.env)
        if migrated.returncode != 0:
            raise NotAvailable(f"monolith migrate failed: {migrated.stderr.strip()[-300:]}")
        server = self.start("default", ctx, load=True)
        server.stop()
        self.has_jobs = _cli("jobs", "enqueue", "--help", env=self.env).returncode == 0
        if not self.has_jobs:
            self.missing["jobs"] = "the job queue is not there yet"

    def start(self, variant: str, ctx: RunContext, load: bool = False) -> Server:
        port = free_port()
        env = {**self.env, **VARIANT_ENV[variant], "MONOLITH_PORT": str(port)}
        if variant == "replicated":
            env |= self._replica_env(ctx)
        cmd = [sys.executable, "-m", "monolith", "serve", "--workers", str(ctx.workers)]
        web = spawn("monolith serve", cmd, env, ctx.workdir / "monolith.log")
        server = Server(f"http://127.0.0.1:{port}", web)
        try:
            if variant == "replicated":
                server.helpers.append(self._replicate(env, ctx))
            wait_http(web, server.url + "/health/live")
            if load:
                self._load(server.url, ctx.products)
            if variant == "cache_off":
                self._check_uncached(server.url)
        except BaseException:
            server.stop()
            raise
        server.params = dict(self.params)
        return server

    def _replica_env(self, ctx: RunContext) -> dict[str, str]:
        """A fresh file replica in the work dir, and the Litestream binary (make litestream)."""
        try:
            binary = str(fetch_litestream())
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            raise NotAvailable(f"no Litestream binary (make litestream): {exc}") from exc
        replica = ctx.workdir / "replica"
        shutil.rmtree(replica, ignore_errors=True)
        return {"MONOLITH_REPLICA_URL": f"file://{replica}", "MONOLITH_LITESTREAM": binary}

    def _replicate(self, env: dict[str, str], ctx: RunContext) -> Proc:
        """`monolith replicate` beside serve, once the replica holds the database."""
        cmd = [sys.executable, "-m", "monolith", "replicate"]
        status = self.data_dir / STATUS_FILE
        status.unlink(missing_ok=True)  # a previous round's figures
        proc = spawn("monolith replicate", cmd, env, ctx.workdir / "replicate.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not proc.alive():
                raise ServerFailed(f"monolith replicate exited:\n{log_tail(proc.log)}")
            with contextlib.suppress(OSError, ValueError):
                if json.loads(status.read_text()).get("last_replicated_at"):
                    return proc
            time.sleep(0.1)
        proc.stop()
        raise ServerFailed(f"monolith replicate did not start:\n{log_tail(proc.log)}")

    def _load(self, url: str, count: int) -> None:
        """Catalog, a signed-in user and one order, through the public API."""
        import httpx

        admin = {"Authorization": f"Bearer {self.env['MONOLITH_ADMIN_TOKEN']}"}
        self.params = {"admin": admin["Authorization"], "cookie": "session=none", "oid": "1"}
        with httpx.Client(base_url=url, timeout=30) as client:
            for product in products(count):
                r = client.post("/api/products", json=product, headers=admin)
                if r.status_code != 201:
                    raise NotAvailable(
                        f"POST /api/products answered {r.status_code}: {r.text[:200]}"
                    )
            if client.get("/api/products/1").status_code != 200:
                self.missing["product"] = "GET /api/products/{id} is not there yet"
            user = {"email": "bench@example.com", "password": "bench-password-1", "name": "Bench"}
            client.post("/api/auth/signup", json=user)
            r = client.post("/api/auth/login", json={k: user[k] for k in ("email", "password")})
            cookie = r.headers.get("set-cookie", "").split(";", 1)[0]
            if r.status_code != 200 or not cookie:
                self.missing["mix"] = "sign-in is not there yet"
                self.orders = False
                return
            self.params["cookie"] = cookie
            body = {"items": [{"product_id": 1, "quantity": 1}]}
            r = client.post("/api/orders", json=body, headers={"Cookie": cookie})
            if r.status_code != 201:
                self.missing["mix"] = f"POST /api/orders answered {r.status_code}"
                self.orders = False
                return
            self.params["oid"] = str(json.loads(r.text)["id"])

    def _check_uncached(self, url: str) -> None:
        """Prove product reads hit the database: change a row behind the app's back, read it."""
        import httpx

        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(4):  # fill whatever cache each worker has
                client.get("/api/products/1")
            marker = f"uncached probe {secrets.token_hex(4)}"
            with sqlite3.connect(self.data_dir / "monolith.db") as conn:
                conn.execute("UPDATE products SET description = ? WHERE id = 1", (marker,))
            for _ in range(4):
                if marker not in client.get("/api/products/1").text:
                    raise NotAvailable(
                        "product reads are cached and no setting turns that off yet "
                        "(expected MONOLITH_CACHE_PRODUCTS=off)"
                    )

    def jobs_per_second(self, server: Server, count: int) -> float:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.monolith_jobs", str(count)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **self.env},
        )
        if proc.returncode != 0:
            raise NotAvailable(f"jobs driver failed: {proc.stderr.strip()[-300:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if result["failed"]:
            raise NotAvailable(f"{result['failed']} ops.ping jobs failed")
        return float(result["jobs_per_s"])
