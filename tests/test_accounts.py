"""Accounts over HTTP: signup, login, sessions, profiles, the admin role, and rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from monolith.accounts import model as accounts
from monolith.accounts.cache import user_changed
from monolith.cli.common import started_services
from monolith.sessions import COOKIE, Sessions
from monolith.store.memory import MemoryStore
from tests.apphelpers import ADMIN, app_client, make_settings
from tests.server import base_env, run_cli
from tests.services import free_port

PASSWORD = "correct horse battery staple"
CSRF = {"X-Monolith-CSRF": "1"}


@pytest.fixture
async def client(db_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    """The app on SQLite, then on PostgreSQL (both dialects of the accounts migration)."""
    async with app_client(make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)) as c:
        yield c


async def signup(client: AsyncTestClient, email: str = "ada@example.com") -> dict[str, object]:
    r = await client.post(
        "/api/auth/signup", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


async def login(client: AsyncTestClient, email: str = "ada@example.com") -> None:
    r = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_signup_login_me_logout(client: AsyncTestClient) -> None:
    user = await signup(client, "  Ada@Example.COM ")
    assert user["email"] == "ada@example.com"
    assert user["role"] == "user"
    assert (await client.get("/api/me")).status_code == 401

    r = await client.post(
        "/api/auth/login", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # not production
    me = (await client.get("/api/me")).json()
    assert me["id"] == user["id"]

    r = await client.post("/api/auth/logout")
    assert r.status_code == 204
    assert "Max-Age=0" in r.headers["set-cookie"]
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.post("/api/auth/logout")).status_code == 401


async def test_a_session_cookie_is_secure_in_production(data_dir: Path) -> None:
    settings = make_settings(data_dir, MONOLITH_ENV="production")
    async with app_client(settings) as c:
        await signup(c)
        r = await c.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
        assert "Secure" in r.headers["set-cookie"]


async def test_wrong_password_and_unknown_email_are_the_same_401(client: AsyncTestClient) -> None:
    await signup(client)
    wrong = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "not the password"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json() == unknown.json() == {"status_code": 401, "detail": "wrong email or password"}
    )
    assert "set-cookie" not in wrong.headers


async def test_forged_and_stale_cookies_are_not_sessions(client: AsyncTestClient) -> None:
    await signup(client)
    await login(client)
    real = client.cookies["monolith_session"]
    client.cookies.clear()

    async def me_with(cookie: str) -> int:
        r = await client.get("/api/me", headers={"Cookie": f"monolith_session={cookie}"})
        return r.status_code

    assert await me_with(real) == 200
    token, _, sig = real.partition(".")
    for forged in (f"{token}.{'A' * len(sig)}", f"{'B' * len(token)}.{sig}", "garbage", ""):
        assert await me_with(forged) == 401
    r = await client.post("/api/auth/logout", headers={"Cookie": f"monolith_session={real}"})
    assert r.status_code == 204
    assert await me_with(real) == 401  # replaying a signed-out cookie


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"email": "ada@example.com", "password": "short", "name": "A"}, 422, "password"),
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, 422, "email"),
        ({"email": "ada@example.com", "password": PASSWORD}, 422, "name"),
        ({"email": "ada@example.com", "password": PASSWORD, "name": "A", "role": "admin"}, 422, ""),
    ],
)
async def test_bad_signups_are_refused_naming_the_field(
    client: AsyncTestClient, body: dict[str, str], status: int, detail: str
) -> None:
    r = await client.post("/api/auth/signup", json=body)
    assert r.status_code == status
    assert r.json()["detail"].startswith(detail)


async def test_an_email_signs_up_once(client: AsyncTestClient) -> None:
    await signup(client)
    r = await client.post(
        "/api/auth/signup",
        json={"email": "ADA@example.com", "password": PASSWORD, "name": "Other"},
    )
    assert r.status_code == 409


async def test_passwords_never_reach_logs_or_responses(client: AsyncTestClient) -> None:
    with capture_logs() as logs:
        bodies = [
            (
                await client.post(
                    "/api/auth/signup",
                    json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"},
                )
            ).text,
            (
                await client.post(
                    "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
                )
            ).text,
            (
                await client.post(
                    "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD + "x"}
                )
            ).text,
            (
                await client.post(
                    "/api/auth/signup",
                    json={"email": "b@example.com", "password": 12345678, "name": "B"},
                )
            ).text,
            (await client.get("/api/me")).text,
        ]
    assert logs, "the access log should have recorded these requests"
    assert all(PASSWORD not in text and "12345678" not in text for text in bodies)
    assert all(PASSWORD not in repr(entry) for entry in logs)
    assert all("argon2" not in text for text in bodies)


async def test_profiles_are_public_and_change_at_once(client: AsyncTestClient) -> None:
    user = await signup(client)
    url = f"/api/users/{user['id']}/profile"
    assert (await client.get(url)).json() == {"id": user["id"], "name": "Ada", "bio": ""}
    assert (await client.get("/api/users/999/profile")).status_code == 404
    assert (await client.patch("/api/me/profile", json={"bio": "x"})).status_code == 401

    await login(client)
    r = await client.patch("/api/me/profile", json={"bio": "Counts things.", "name": "Ada L."})
    assert r.status_code == 200
    assert (await client.get(url)).json() == {
        "id": user["id"],
        "name": "Ada L.",
        "bio": "Counts things.",
    }
    assert (await client.get("/api/me")).json()["name"] == "Ada L."
    assert (await client.patch("/api/me/profile", json={})).status_code == 422
    assert (await client.patch("/api/me/profile", json={"email": "x@y.z"})).status_code == 422


async def test_admin_routes_take_an_admin_session_or_the_token(
    client: AsyncTestClient, data_dir: Path, db_url: str
) -> None:
    product = {"name": "Lamp", "price_cents": 100}
    assert (await client.post("/api/products", json=product)).status_code == 401
    assert (await client.post("/api/products", json=product, headers=ADMIN)).status_code == 201
    wrong_token = {"Authorization": "Bearer nope"}
    assert (
        await client.post("/api/products", json=product, headers=wrong_token)
    ).status_code == 403

    await signup(client)
    await login(client)
    assert (await client.post("/api/products", json=product)).status_code == 403
    async with started_services(make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)) as svc:
        await accounts.make_admin(svc.db, "ada@example.com", None)
        await user_changed(svc, 1)  # what create-admin does after promoting
    # A change made with the session cookie also needs the CSRF header (a cross-site page
    # cannot send it); the token needs none.
    refused = await client.post("/api/products", json=product)
    assert refused.status_code == 403
    assert "x-monolith-csrf" in refused.json()["detail"]
    assert (await client.get("/api/products/2")).status_code == 404  # the refusal added nothing
    assert (await client.post("/api/products", json=product, headers=CSRF)).status_code == 201
    assert (await client.get("/api/me")).json()["role"] == "admin"


def test_create_admin_command(data_dir: Path) -> None:
    env = base_env(data_dir)
    done = run_cli(
        "create-admin",
        "root@example.com",
        "--password-stdin",
        "--json",
        env=env,
        input=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert '"created": true' in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    again = run_cli("create-admin", "root@example.com", "--password-stdin", env=env, input="")
    assert again.returncode == 1  # an empty password read from stdin is too short
    promoted = run_cli("create-admin", "root@example.com", env=env, input="")
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted root@example.com" in promoted.stdout
    missing = run_cli("create-admin", "new@example.com", env=env, input="")
    assert missing.returncode == 1
    assert "password" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_cli("create-admin", "not-an-email", env=env, input="")
    assert bad.returncode == 1
    assert "email" in bad.stderr


async def test_login_limit_refuses_with_429_and_headers(data_dir: Path) -> None:
    settings = make_settings(data_dir, MONOLITH_RATE_LIMITS="login=3/minute,api=100/minute")
    async with app_client(settings) as c:
        codes = []
        for _ in range(5):
            r = await c.post("/api/auth/login", json={"email": "a@b.co", "password": "whatever1"})
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429, 429]
        assert r.json()["detail"].startswith("rate limit exceeded")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["ratelimit-limit"] == "3"
        assert r.headers["ratelimit-remaining"] == "0"
        ok = await c.get("/api/products")
        assert ok.headers["ratelimit-limit"] == "100"
        assert int(ok.headers["ratelimit-remaining"]) < 100
        assert "ratelimit-limit" not in (await c.get("/health/live")).headers


async def test_the_admin_pages_sign_in_shares_the_login_limit(data_dir: Path) -> None:
    settings = make_settings(data_dir, MONOLITH_RATE_LIMITS="login=3/minute,api=100/minute")
    form = {"email": "a@b.co", "password": "whatever1"}
    async with app_client(settings) as c:
        r = await c.post("/api/auth/login", json=form)
        codes = [r.status_code]
        for _ in range(3):
            r = await c.post("/admin/login", data=form)
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # The token sign-in is the same route, with the same budget.
        r = await c.post("/admin/login", data={"token": "test-admin-token"})
        assert r.status_code == 429
        # The page itself, and the rest of /admin, are not limited.
        assert (await c.get("/admin")).status_code == 200
        assert "ratelimit-limit" not in (await c.get("/admin")).headers


async def test_a_store_that_is_down_degrades_reads_and_refuses_sessions(data_dir: Path) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    limited = make_settings(
        data_dir, MONOLITH_CACHE_URL=unreachable, MONOLITH_RATE_LIMITS="api=100/minute"
    )
    async with app_client(limited) as c:
        # The limiter counts per process; the read comes from the database.
        r = await c.get("/api/products/1")
        assert r.status_code == 404
        assert r.headers["ratelimit-limit"] == "100"
        # A session needs the store: a 503 that names no internal host.
        signer = Sessions(MemoryStore(), limited.security.secret_key, secure=False)
        await signer.store.start()
        cookie = await signer.create(1)  # signed with the app's key, held nowhere it can read
        r = await c.get("/api/me", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "127.0.0.1" not in r.text
        ready = await c.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert "cache" in ready.json()["detail"] and "127.0.0.1" not in ready.text
        assert (await c.get("/health/live")).status_code == 200
    # Without a limit in front, a cached read falls back to the database.
    unlimited = make_settings(data_dir, MONOLITH_CACHE_URL=unreachable)
    async with app_client(unlimited) as c:
        assert (await c.get("/api/products/1")).status_code == 404
        assert (await c.get("/api/users/1/profile")).status_code == 404
