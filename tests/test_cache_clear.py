"""``monolith cache clear`` and the store's database fingerprint, on real commands.

Two databases, one shared store (the test profile's: the disk cache of one data dir, or
Redis): after the app ran on the first, pointing it at the second makes ``monolith doctor``
name the store as holding another database's data; ``monolith cache clear`` empties the cache
and makes doctor content again. ``--namespace`` empties exactly that namespace.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from monolith.services import build_services
from monolith.store import open_store
from tests.apphelpers import make_settings
from tests.server import base_env, run_cli


async def _run_app_once(data_dir: Path, env: dict[str, str]) -> None:
    svc = build_services(make_settings(data_dir, **env))
    await svc.start()
    try:
        await svc.cache.store.set("product:1", b"from the first database")
        await svc.sessions.store.set("s1", b"a session")
    finally:
        await svc.stop()


async def _entries(data_dir: Path, env: dict[str, str]) -> tuple[bytes | None, bytes | None]:
    settings = make_settings(data_dir, **env)
    store = open_store(settings.store.url)
    await store.start()
    try:
        cached = await store.with_namespace("cache").get("product:1")
        session = await store.kept("sessions").get("s1")
        return cached, session
    finally:
        await store.stop()


def _fingerprint_check(env: dict[str, str]) -> dict[str, str]:
    done = run_cli("doctor", "--json", env=env)
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    return dict(checks["store fingerprint"])


def test_doctor_names_a_store_of_another_database_until_cache_clear(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = {"MONOLITH_DATABASE_URL": f"sqlite:///{tmp_path / 'first.db'}"}
    second = {"MONOLITH_DATABASE_URL": f"sqlite:///{tmp_path / 'second.db'}"}
    asyncio.run(_run_app_once(data_dir, first))
    assert _fingerprint_check(base_env(data_dir, **first))["level"] == "ok"

    moved = _fingerprint_check(base_env(data_dir, **second))
    assert moved["level"] == "problem"
    assert "first.db" in moved["message"] and "monolith cache clear" in moved["message"]

    env = base_env(data_dir, **second)
    cleared = run_cli("cache", "clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert "cleared namespace 'cache'" in cleared.stdout
    cached, session = asyncio.run(_entries(data_dir, second))
    assert cached is None and session == b"a session"  # only the cache namespace
    assert _fingerprint_check(env)["level"] == "ok"

    assert run_cli("cache", "clear", "--namespace", "sessions", env=env).returncode == 0
    assert asyncio.run(_entries(data_dir, second)) == (None, None)
    bad = run_cli("cache", "clear", "--namespace", "no/such", env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("monolith cache clear: --namespace:")
