"""What follows a committed change runs from one place (``shop/catalog/effects.py``), and a
failure after the commit never turns the committed answer into an error nor stops the event.

Real parts: the app on a SQLite file, a redis-server of the test's own that it kills, the
media directory on disk with an image the storage cannot remove.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from monolith.app import create_app
from monolith.config import Settings
from monolith.events import Listener
from monolith.services import Services, build_services
from tests.apphelpers import ADMIN, make_settings
from tests.images import png_bytes
from tests.profile import DEFAULT_BACKENDS
from tests.services import throwaway_redis

#: Rate limits off: with the store down they would refuse the request before it is handled.
NO_LIMITS = "api=0/minute,login=0/minute,signup=0/minute,orders=0/minute"


async def next_event(listener: Listener, kind: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async for item in listener:
            event: dict[str, Any] = msgspec.json.decode(item.data)
            if event.get("type") == kind:
                return event
        raise AssertionError("the listener closed")

    return await asyncio.wait_for(read(), 20)


async def app_with(settings: Settings) -> tuple[Services, AsyncTestClient]:
    svc = build_services(settings)
    return svc, AsyncTestClient(app=create_app(settings, svc))


@pytest.fixture
async def local(data_dir: Path) -> AsyncIterator[tuple[Services, AsyncTestClient]]:
    svc, client = await app_with(make_settings(data_dir, MONOLITH_RATE_LIMITS=NO_LIMITS))
    async with client:
        yield svc, client


async def test_delete_commits_answers_and_announces_when_the_image_cannot_be_removed(
    local: tuple[Services, AsyncTestClient], data_dir: Path
) -> None:
    svc, client = local
    r = await client.post("/api/products", json={"name": "Mug", "price_cents": 900}, headers=ADMIN)
    product_id = r.json()["id"]
    r = await client.post(
        f"/api/products/{product_id}/image",
        files={"file": ("mug.png", png_bytes(), "image/png")},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    key = r.json()["image_url"].rsplit("/", 1)[1]
    # The stored file becomes something the storage cannot unlink (a non-empty directory).
    stored = svc.settings.media_dir / key
    stored.unlink()
    stored.mkdir()
    (stored / "keep").write_bytes(b"x")

    async with svc.events.listen(["products"]) as listener:
        r = await client.delete(f"/api/products/{product_id}", headers=ADMIN)
        assert r.status_code == 204, r.text
        event = await next_event(listener, "product.deleted")
    assert event["id"] == product_id
    assert (await client.get(f"/api/products/{product_id}")).status_code == 404
    shutil.rmtree(stored)


@pytest.mark.redis
@pytest.mark.profile_independent  # picks its own backends: SQLite and a Redis it kills
async def test_a_write_with_the_store_down_answers_the_committed_result_and_announces_it(
    data_dir: Path,
) -> None:
    with throwaway_redis() as (port, procs):
        settings = make_settings(
            data_dir,
            **DEFAULT_BACKENDS
            | {
                "MONOLITH_RATE_LIMITS": NO_LIMITS,
                "MONOLITH_CACHE_URL": f"redis://127.0.0.1:{port}/0",
            },
        )
        svc, client = await app_with(settings)
        async with client:
            r = await client.post(
                "/api/products", json={"name": "Mug", "price_cents": 900}, headers=ADMIN
            )
            product_id = r.json()["id"]
            assert (await client.get(f"/api/products/{product_id}")).status_code == 200  # cached

            procs[-1].kill()
            procs[-1].wait()
            async with svc.events.listen(["products"]) as listener:
                r = await client.patch(
                    f"/api/products/{product_id}", json={"price_cents": 1200}, headers=ADMIN
                )
                assert r.status_code == 200, r.text
                assert r.json()["price_cents"] == 1200
                event = await next_event(listener, "product.updated")
            assert event["product"]["price_cents"] == 1200
            row = await svc.db.fetch_one(
                "SELECT price_cents FROM products WHERE id = ?", (product_id,)
            )
            assert row is not None and row[0] == 1200
