"""Shared state with a real ``monolith serve --workers 2``: limits, sessions and the product
cache behave as one, whichever worker answers; a damaged cache or a Redis outage heals.

Every request goes on a new connection, so the kernel spreads them over both workers; each
test checks that both workers did answer (``X-Worker-Pid``), or it would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env, box_env
from tests.services import (
    REDIS_URL,
    free_port,
    launch_redis,
    require_binary,
    require_redis,
    unique_name,
)

pytestmark = pytest.mark.slow

LOGIN_LIMIT = 5
PASSWORD = "correct horse battery staple"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMITS = f"login={LOGIN_LIMIT}/minute,signup=0/minute,orders=0/minute,api=0/minute"


def fresh(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request on its own connection (a new connection may land on either worker)."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, **kwargs)  # type: ignore[arg-type]


def many(count: int, method: str, url: str, **kwargs: object) -> list[httpx.Response]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: fresh(method, url, **kwargs), range(count)))


def pids(responses: list[httpx.Response]) -> set[str]:
    return {r.headers["x-worker-pid"] for r in responses}


def on_both(count: int, method: str, url: str, **kwargs: object) -> list[httpx.Response]:
    """``many`` reads, repeated (at most 10 times) until both workers have answered.

    The kernel spreads new connections over the workers' SO_REUSEPORT listeners by hash, so a
    handful of connections can all land on one worker; only for requests safe to repeat.
    """
    responses: list[httpx.Response] = []
    for _ in range(10):
        responses += many(count, method, url, **kwargs)
        if len(pids(responses)) >= 2:
            break
    return responses


@pytest.fixture(
    scope="module",
    params=[
        # One box: SQLite and the disk cache in every test profile (the scale-out run, which
        # would repeat it as it is, leaves it out).
        pytest.param("disk", marks=pytest.mark.profile_independent),
        # The database is the test profile's (SQLite, or PostgreSQL in the scale-out run).
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("workers") / "var"
    data_dir.mkdir()
    namespace = None
    if request.param == "disk":
        env = box_env(data_dir, MONOLITH_RATE_LIMITS=LIMITS)
    else:
        require_redis()
        namespace = unique_name("monolith_test")
        cache = f"{REDIS_URL}?namespace={namespace}:app"
        env = base_env(data_dir, MONOLITH_RATE_LIMITS=LIMITS, MONOLITH_CACHE_URL=cache)
    with ServerProcess(data_dir, workers=2, env=env) as proc:
        r = fresh(
            "POST",
            f"{proc.url}/api/auth/signup",
            json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"},
        )
        assert r.status_code == 201, r.text
        yield proc
    if namespace is not None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()


def test_login_limit_admits_exactly_n_across_workers(server: ServerProcess) -> None:
    # A client of its own (the test server trusts 127.0.0.1 as a proxy).
    client = {"X-Forwarded-For": "10.0.0.1"}
    attempts = many(
        4 * LOGIN_LIMIT,
        "POST",
        f"{server.url}/api/auth/login",
        json={"email": "ada@example.com", "password": "wrong password"},
        headers=client,
    )
    codes = sorted(r.status_code for r in attempts)
    assert codes == [401] * LOGIN_LIMIT + [429] * (3 * LOGIN_LIMIT)
    assert len(pids(attempts)) == 2
    refused = next(r for r in attempts if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == str(LOGIN_LIMIT)
    # Another client still has its whole budget.
    other = fresh(
        "POST",
        f"{server.url}/api/auth/login",
        headers={"X-Forwarded-For": "10.0.0.9"},
        json={"email": "ada@example.com", "password": PASSWORD},
    )
    assert other.status_code == 200


def test_a_session_made_on_one_worker_is_valid_on_the_other(server: ServerProcess) -> None:
    r = fresh(
        "POST",
        f"{server.url}/api/auth/login",
        headers={"X-Forwarded-For": "10.0.0.2"},
        json={"email": "ada@example.com", "password": PASSWORD},
    )
    assert r.status_code == 200, r.text
    login_pid = r.headers["x-worker-pid"]
    cookie = {"Cookie": f"monolith_session={r.cookies['monolith_session']}"}
    reads = many(16, "GET", f"{server.url}/api/me", headers=cookie)
    assert {x.status_code for x in reads} == {200}
    assert {x.json()["email"] for x in reads} == {"ada@example.com"}
    assert pids(reads) - {login_pid}, "no read landed on the other worker"

    out = fresh("POST", f"{server.url}/api/auth/logout", headers=cookie)
    assert out.status_code == 204
    after = many(8, "GET", f"{server.url}/api/me", headers=cookie)
    assert {x.status_code for x in after} == {401}


def test_after_patch_no_worker_serves_the_old_product(server: ServerProcess) -> None:
    created = fresh(
        "POST",
        f"{server.url}/api/products",
        headers=ADMIN,
        json={"name": "Lamp", "price_cents": 1000, "stock": 1},
    )
    assert created.status_code == 201
    url = f"{server.url}/api/products/{created.json()['id']}"
    page = f"{server.url}/api/products?limit=100"
    warm = many(8, "GET", url) + many(8, "GET", page)  # cached now, read by both workers
    assert len(pids(warm)) == 2
    for price in (1500, 2000, 2500):
        patched = fresh("PATCH", url, headers=ADMIN, json={"price_cents": price})
        assert patched.status_code == 200
        reads = many(10, "GET", url)
        pages = many(6, "GET", page)
        assert {r.json()["price_cents"] for r in reads} == {price}
        lamp = [{p["price_cents"] for p in r.json()["items"] if p["name"] == "Lamp"} for r in pages]
        assert lamp == [{price}] * len(pages)
        assert len(pids(reads + pages)) == 2
    fresh("DELETE", url, headers=ADMIN)
    assert {r.status_code for r in many(6, "GET", url)} == {404}


@pytest.mark.profile_independent
@pytest.mark.parametrize("server", ["disk"], indirect=True)
def test_a_cache_directory_deleted_or_corrupted_while_serving_costs_misses(
    server: ServerProcess,
) -> None:
    cache_dir = server.data_dir / "cache"
    created = fresh(
        "POST", f"{server.url}/api/products", headers=ADMIN, json={"name": "A", "price_cents": 1}
    )
    assert created.status_code == 201, created.text
    url = f"{server.url}/api/products/{created.json()['id']}"
    assert {r.status_code for r in many(6, "GET", url)} == {200}
    shutil.rmtree(cache_dir)
    assert {r.status_code for r in many(10, "GET", url)} == {200}
    assert cache_dir.exists()
    with open(cache_dir / "cache.db", "r+b") as f:
        f.write(os.urandom(32 * 1024))
    reads = many(10, "GET", url)
    assert {r.status_code for r in reads} == {200}
    assert len(pids(reads)) == 2
    # The rebuilt cache is shared again: a write on one worker is seen by the other.
    patched = fresh("PATCH", url, headers=ADMIN, json={"price_cents": 7})
    assert patched.status_code == 200
    assert {r.json()["price_cents"] for r in many(10, "GET", url)} == {7}
    ready = fresh("GET", f"{server.url}/health/ready")
    assert ready.status_code == 200, ready.text


def test_redis_going_away_degrades_and_heals_itself(tmp_path: Path) -> None:
    """Redis down, PostgreSQL (or SQLite) fine: reads come from the database, rate limits
    count per process, a route that needs a session is a 503 naming no host, and readiness
    says "degraded" (200) so a load balancer keeps the instance; all heals when Redis is back."""
    require_binary("redis-server", "redis-server")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    launch_redis(port, procs)
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = base_env(
        data_dir,
        MONOLITH_CACHE_URL=f"redis://127.0.0.1:{port}/0",
        MONOLITH_RATE_LIMITS="api=100000/minute",
    )
    try:
        with ServerProcess(data_dir, workers=2, env=env) as proc:
            url = f"{proc.url}/api/products?limit=5"
            assert {r.status_code for r in many(6, "GET", url)} == {200}
            account = {"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}
            assert fresh("POST", f"{proc.url}/api/auth/signup", json=account).status_code == 201
            login = fresh(
                "POST",
                f"{proc.url}/api/auth/login",
                json={"email": account["email"], "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            cookie = {"Cookie": login.headers["set-cookie"].split(";")[0]}
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait()

            down = on_both(8, "GET", url, headers=cookie)
            assert {r.status_code for r in down} == {200}, [r.text for r in down]
            assert all(r.headers["ratelimit-limit"] == "100000" for r in down)
            me = many(4, "GET", f"{proc.url}/api/me", headers=cookie)
            assert {r.status_code for r in me} == {503}
            assert all(int(r.headers["retry-after"]) >= 1 for r in me)
            assert not any(str(port) in r.text or "127.0.0.1" in r.text for r in me)
            ready = fresh("GET", f"{proc.url}/health/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["database"] == "ok"
            assert str(port) not in ready.text
            assert fresh("GET", f"{proc.url}/health/live").status_code == 200
            metrics = fresh("GET", f"{proc.url}/metrics", headers=ADMIN).text
            assert 'monolith_ratelimit_fallbacks_total{limit="api"}' in metrics
            overview = fresh("GET", f"{proc.url}/api/admin/overview", headers=ADMIN).json()
            assert overview["now"]["rate_limit_fallbacks_total"] >= len(down)
            # Logged once per outage and limit in each worker, not once per request.
            said = proc.log_text().count("rate limit counted per process")
            assert 1 <= said <= 2, said

            launch_redis(port, procs)  # same port, empty: nothing restarted on our side
            back = many(10, "GET", url)
            assert {r.status_code for r in back} == {200}
            assert len(pids(back)) == 2
            ready = fresh("GET", f"{proc.url}/health/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "ok"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
