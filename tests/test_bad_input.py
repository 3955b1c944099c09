"""Bad input gets the contract's 4xx, names the field where there is one, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from tests.apphelpers import ADMIN, app_client, behind_its_back, make_settings

JSON = {"Content-Type": "application/json", **ADMIN}


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    async with app_client(make_settings(data_dir)) as c:
        r = await c.post("/api/products", json={"name": "Kept", "price_cents": 10}, headers=ADMIN)
        assert r.status_code == 201
        yield c


async def _unchanged(client: AsyncTestClient) -> None:
    items = (await client.get("/api/products")).json()["items"]
    assert [(p["name"], p["price_cents"]) for p in items] == [("Kept", 10)]


@pytest.mark.parametrize(
    ("body", "status", "detail_starts"),
    [
        (b'{"name": "x", "price_cents": 5', 400, "malformed JSON"),
        (b"not json at all", 400, "malformed JSON"),
        (b"", 400, "request body is empty"),
        (b"[1, 2]", 422, "body: Expected `object`"),
        (b'{"name": "x", "price_cents": "5"}', 422, "price_cents: Expected `int`, got `str`"),
        (b'{"name": 5, "price_cents": 5}', 422, "name: Expected `str`"),
        (b'{"name": "x", "price_cents": -1}', 422, "price_cents: Expected `int` >= 0"),
        (b'{"name": "", "price_cents": 1}', 422, "name: Expected `str` of length >= 1"),
        (b'{"price_cents": 1}', 422, "name: field required"),
        (b'{"name": "x", "price_cents": 1, "colour": "red"}', 422, "colour"),
        (b'{"name": "x", "price_cents": 1.5}', 422, "price_cents: Expected `int`, got `float`"),
    ],
)
async def test_bad_product_bodies(
    client: AsyncTestClient,
    body: bytes,
    status: int,
    detail_starts: str,
) -> None:
    r = await client.post("/api/products", content=body, headers=JSON)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["status_code"] == status
    assert payload["detail"].startswith(detail_starts) or detail_starts in payload["detail"]
    await _unchanged(client)


async def test_a_10_mb_body_is_413_and_changes_nothing(client: AsyncTestClient) -> None:
    big = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'", "price_cents": 1}'
    r = await client.post("/api/products", content=big, headers=JSON)
    assert r.status_code == 413
    assert r.json()["status_code"] == 413
    await _unchanged(client)


async def test_bad_patch_bodies(client: AsyncTestClient) -> None:
    pid = (await client.get("/api/products")).json()["items"][0]["id"]
    r = await client.patch(f"/api/products/{pid}", content=b"{}", headers=JSON)
    assert r.status_code == 422
    assert "no field" in r.json()["detail"]
    r = await client.patch(f"/api/products/{pid}", content=b'{"stock": -3}', headers=JSON)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("stock:")
    await _unchanged(client)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/products/999999", 404),
        ("PATCH", "/api/products/999999", 404),
        ("DELETE", "/api/products/999999", 404),
        ("GET", "/api/products/abc", 404),
        ("GET", "/api/products/0", 422),
        ("GET", "/api/products/-4", 422),
        ("GET", "/api/products?limit=0", 422),
        ("GET", "/api/products?limit=1000", 422),
        ("GET", "/api/products?limit=ten", 422),
        ("GET", "/api/products?cursor=%%%", 400),
        ("GET", "/api/products?cursor=cDE", 200),
        ("GET", "/nowhere", 404),
        ("PUT", "/api/products", 405),
    ],
)
async def test_bad_ids_and_parameters(
    client: AsyncTestClient,
    method: str,
    path: str,
    status: int,
) -> None:
    body = b'{"stock": 1}' if method == "PATCH" else None
    r = await client.request(method, path, content=body, headers=JSON)
    assert r.status_code == status, r.text
    if status >= 400:
        payload = r.json()
        assert payload["status_code"] == status
        assert isinstance(payload["detail"], str) and payload["detail"]
    await _unchanged(client)


async def test_an_unexpected_error_is_a_bare_500_and_logged_with_request_id(
    client: AsyncTestClient,
    data_dir: Path,
) -> None:
    """A fault the code does not expect (here: the table vanished) is a 500 with no trace in
    the body; the trace goes to the log with the request id."""
    import structlog

    # make_settings gives the same database again: the client's app's.
    await behind_its_back(make_settings(data_dir), "ALTER TABLE products RENAME TO products_gone")
    with structlog.testing.capture_logs() as logs:
        r = await client.get("/api/products", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.json() == {"status_code": 500, "detail": "internal server error"}
    assert "Traceback" not in r.text and "products" not in r.text
    assert r.headers["x-request-id"] == "req-42"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors
    assert "products" in str(errors[0]["exc_info"])  # SQLite's or PostgreSQL's own error


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_json_route_refuses_other_content_types(
    client: AsyncTestClient, content_type: str | None
) -> None:
    """What a page on another site can send without a CORS preflight is a 415."""
    headers = dict(ADMIN) | ({"Content-Type": content_type} if content_type else {})
    body = b'{"name": "x", "price_cents": 5}'
    r = await client.post("/api/products", content=body, headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["detail"].startswith("Content-Type must be application/json")
    ok = await client.post(
        "/api/products", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert ok.status_code == 201
    await client.delete(f"/api/products/{ok.json()['id']}", headers=ADMIN)
    await _unchanged(client)


async def test_a_key_given_twice_is_a_400(client: AsyncTestClient) -> None:
    body = b'{"name": "x", "price_cents": 5, "price_cents": 1}'
    r = await client.post("/api/products", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert "price_cents" in r.json()["detail"] and "twice" in r.json()["detail"]
    await _unchanged(client)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": "x\\u0000y", "price_cents": 5}', "name"),
        (b'{"name": "x", "description": "a\\u001bb", "price_cents": 5}', "description"),
    ],
)
async def test_control_characters_in_text_are_a_422_naming_the_field(
    client: AsyncTestClient, body: bytes, field: str
) -> None:
    r = await client.post("/api/products", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}: control characters")
    await _unchanged(client)


async def test_accounts_refuse_nul_in_emails_and_profiles(client: AsyncTestClient) -> None:
    password = "correct horse battery staple"
    r = await client.post(
        "/api/auth/signup", json={"email": "a\u0000@x.com", "password": password, "name": "A"}
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("email")
    for bad in ("ada@@example.com", "ada@example", "ada @example.com", "ada@exa_mple.com"):
        r = await client.post(
            "/api/auth/signup", json={"email": bad, "password": password, "name": "A"}
        )
        assert r.status_code == 422, bad
        assert r.json()["detail"].startswith("email: not an email address")
    r = await client.post(
        "/api/auth/signup", json={"email": "ada@example.com", "password": password, "name": "A"}
    )
    assert r.status_code == 201
    r = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": password}
    )
    assert r.status_code == 200
    r = await client.patch("/api/me/profile", json={"bio": "line one\nline\ttwo"})
    assert r.status_code == 200  # tabs and newlines are text
    r = await client.patch("/api/me/profile", json={"bio": "nul\u0000here"})
    assert r.status_code == 422 and r.json()["detail"].startswith("bio: control characters")
    assert (await client.get("/api/me")).json()["bio"] == "line one\nline\ttwo"
