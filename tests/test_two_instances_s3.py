"""Acceptance: two instances on PostgreSQL + Redis + S3 behind real Caddy lose nothing.

Two ``monolith serve`` processes and one ``monolith worker`` on one PostgreSQL database (data,
jobs, and pub/sub through LISTEN/NOTIFY), one Redis (cache, rate limits, sessions) and one
bucket on a real S3-protocol server (moto's standalone server, started here): the deployment
of docs/SCALING.md with uploads on object storage. An upload through one instance is served
byte for byte by the other and through Caddy; ``monolith doctor`` exits 0; ``monolith media
migrate`` copies a local media directory into the bucket and verifies every file; an SSE
client that was away while 20 events happened gets exactly those 20, in order, from the other
instance; an anonymous client hears no order event while the order's owner does.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from monolith.media import new_key
from tests.caddy import Caddy
from tests.deployment import start_two_instances
from tests.images import png_bytes
from tests.s3server import S3Server, s3_server
from tests.server import ADMIN_TOKEN, ServerProcess, run_cli
from tests.services import (
    REDIS_URL,
    pg_url,
    unique_name,
)
from tests.test_orders_processes import account

__all__ = ["s3_server"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.caddy,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.shared,
    pytest.mark.profile_independent,
]

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CEILING = 15.0


@dataclass
class Deployment:
    instances: dict[str, ServerProcess]
    caddy: Caddy
    envs: dict[str, dict[str, str]]
    s3: S3Server
    bucket: str

    def url(self, name: str) -> str:
        return self.instances[name].url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("two-instances-s3")
    name = unique_name("monolith_t")
    bucket = s3_server.bucket("media")
    shared = {
        "MONOLITH_DATABASE_URL": pg_url(name),
        "MONOLITH_CACHE_URL": f"{REDIS_URL}?namespace={name}:store",
        "MONOLITH_CHANNELS_URL": "",
        "MONOLITH_MEDIA_URL": s3_server.url(bucket, "uploads"),
        "MONOLITH_INSTANCES": "2",
        "MONOLITH_RUN_JOBS": "no",
        "PYTHONPATH": str(ROOT),
        **s3_server.env(),
    }
    with ExitStack() as stack:
        two = start_two_instances(stack, root, name, shared, workers=2)
        yield Deployment(two.instances, two.caddy, two.envs, s3_server, bucket)


def test_an_upload_through_one_instance_is_served_by_the_other(deployment: Deployment) -> None:
    r = httpx.post(
        f"{deployment.url('a')}/api/products",
        json={"name": "Pictured", "price_cents": 100, "stock": 1},
        headers=ADMIN,
    )
    product = r.json()["id"]
    image = png_bytes()
    r = httpx.post(
        f"{deployment.url('a')}/api/products/{product}/image",
        files={"file": ("photo.png", image, "image/png")},
        headers=ADMIN,
        timeout=CEILING,
    )
    assert r.status_code == 200, r.text
    url = r.json()["image_url"]
    on_b = httpx.get(f"{deployment.url('b')}{url}", timeout=CEILING)
    assert on_b.status_code == 200 and on_b.content == image
    assert on_b.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert on_b.headers["content-type"] == "image/png"
    with deployment.caddy.client() as client:
        through_caddy = client.get(url)
    assert through_caddy.status_code == 200 and through_caddy.content == image
    assert through_caddy.headers["cache-control"] == "public, max-age=31536000, immutable"
    key = url.rsplit("/", 1)[1]
    assert deployment.s3.keys(deployment.bucket, "uploads/") == [f"uploads/{key}"]


def test_doctor_is_content_with_two_instances_on_s3(deployment: Deployment) -> None:
    done = run_cli("doctor", "--json", env=deployment.envs["b"])
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout
    state = {item["name"]: item for item in report["state"]}
    assert state["uploads"]["scope"] == "shared"
    assert "object storage s3://" in state["uploads"]["backend"]
    assert state["pub/sub"]["scope"] == "shared" and "LISTEN/NOTIFY" in state["pub/sub"]["backend"]
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["workers"]["message"].startswith("2 worker(s), from monolith serve")
    assert "pub/sub namespace" in checks
    assert checks["store fingerprint"]["level"] == "ok"


def test_moving_local_media_to_the_bucket_verifies_every_file(
    deployment: Deployment, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    files = {new_key("png"): os.urandom(1000 + i) for i in range(25)}
    for key, data in files.items():
        (media / key).write_bytes(data)
    (media / ".half-written.png.tmp").write_bytes(b"not an upload")
    target = deployment.s3.url(deployment.bucket, "moved")
    done = run_cli(
        "media",
        "migrate",
        "--from",
        str(media),
        "--to",
        target,
        "--json",
        env=deployment.envs["a"],
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["files"], report["copied"], report["verified"]) == (25, 25, 25)
    assert sorted(deployment.s3.keys(deployment.bucket, "moved/")) == sorted(
        f"moved/{key}" for key in files
    )
    again = json.loads(
        run_cli(
            "media",
            "migrate",
            "--from",
            str(media),
            "--to",
            target,
            "--json",
            env=deployment.envs["a"],
        ).stdout
    )
    assert (again["copied"], again["verified"]) == (0, 25)


async def _stream(
    stack: AsyncExitStack, url: str, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[Any]:
    client = await stack.enter_async_context(
        httpx.AsyncClient(base_url=url, timeout=CEILING, headers=headers)
    )
    source = await stack.enter_async_context(
        aconnect_sse(client, "GET", "/api/events", params=params)
    )
    return source.aiter_sse()


async def test_a_client_away_for_20_events_gets_exactly_those_from_the_other_instance(
    deployment: Deployment,
) -> None:
    created = httpx.post(
        f"{deployment.url('a')}/api/products",
        json={"name": "Resumed", "price_cents": 100, "stock": 100},
        headers=ADMIN,
    ).json()["id"]
    async with AsyncExitStack() as stack:
        events = await _stream(stack, deployment.url("b"), channels="products")
        assert json.loads((await anext(events)).data)["type"] == "hello"
        httpx.patch(
            f"{deployment.url('a')}/api/products/{created}", json={"stock": 99}, headers=ADMIN
        )
        seen = await anext(events)
        assert seen.id and json.loads(seen.data)["product"]["stock"] == 99
    # Away: 20 changes, through both instances.
    for n in range(20):
        on = "a" if n % 2 else "b"
        r = httpx.patch(
            f"{deployment.url(on)}/api/products/{created}", json={"stock": 98 - n}, headers=ADMIN
        )
        assert r.status_code == 200
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=deployment.url("a"), timeout=CEILING)
        )
        source = await stack.enter_async_context(
            aconnect_sse(
                client,
                "GET",
                "/api/events",
                params={"channels": "products"},
                headers={"Last-Event-ID": seen.id},
            )
        )
        events = source.aiter_sse()
        assert json.loads((await anext(events)).data)["type"] == "hello"
        missed = [await anext(events) for _ in range(20)]
    stocks = [json.loads(e.data)["product"]["stock"] for e in missed]
    assert stocks == [98 - n for n in range(20)]
    assert len({e.id for e in missed}) == 20 and all(e.event == "message" for e in missed)
    # WebSocket clients resume the same way with ?since=, the ids in the JSON.
    ws_url = deployment.url("b").replace("http://", "ws://") + "/ws/events"
    async with connect(f"{ws_url}?channels=products&since={seen.id}", open_timeout=CEILING) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        replayed = [json.loads(await ws.recv()) for _ in range(20)]
    assert [e["event_id"] for e in replayed] == [e.id for e in missed]
    assert [e["product"]["stock"] for e in replayed] == stocks
    # An id nobody gave out: an explicit reset.
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=deployment.url("b"), timeout=CEILING)
        )
        source = await stack.enter_async_context(
            aconnect_sse(client, "GET", "/api/events", headers={"Last-Event-ID": "nonsense"})
        )
        events = source.aiter_sse()
        await anext(events)
        reset = await anext(events)
        assert reset.event == "reset" and json.loads(reset.data) == {"type": "reset"}


async def test_order_events_reach_their_owner_and_never_an_anonymous_client(
    deployment: Deployment,
) -> None:
    owner = account(deployment.url("a"), "owner-s3@example.com")
    product = httpx.post(
        f"{deployment.url('a')}/api/products",
        json={"name": "Ordered", "price_cents": 100, "stock": 10},
        headers=ADMIN,
    ).json()["id"]
    async with AsyncExitStack() as stack:
        anonymous = await _stream(stack, deployment.url("b"))
        mine = await _stream(stack, deployment.url("b"), owner)
        for events in (anonymous, mine):
            assert json.loads((await anext(events)).data)["type"] == "hello"
        r = httpx.post(
            f"{deployment.url('a')}/api/orders",
            json={"items": [{"product_id": product, "quantity": 1}]},
            headers=owner,
        )
        assert r.status_code == 201, r.text
        order = r.json()["id"]
        heard = []
        while not heard or heard[-1].get("type") != "order.confirmed":
            heard.append(json.loads((await anext(mine)).data))
        assert heard[-1]["id"] == order
        # A product event after the confirmation: the anonymous stream reaches it without
        # passing any order event.
        httpx.patch(
            f"{deployment.url('a')}/api/products/{product}", json={"stock": 50}, headers=ADMIN
        )
        anonymous_heard = []
        while not anonymous_heard or anonymous_heard[-1].get("product", {}).get("stock") != 50:
            anonymous_heard.append(json.loads((await anext(anonymous)).data))
        assert not [e for e in anonymous_heard if e["type"].startswith("order.")]
