"""Notices (monolith/shop/notices), the worked example of docs/GUIDE.md: the model on both
databases, the routes through the app, the job, and a change seen by both workers of a real
``monolith serve``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from monolith.db import Database
from monolith.jobs import JobContext
from monolith.services import Services
from monolith.shop.notices import model
from monolith.shop.notices.cache import cached_notice_json
from tests.apphelpers import ADMIN, app_client, make_settings
from tests.server import ServerProcess


async def test_the_model_on_each_database(db: Database) -> None:
    async with db.transaction() as tx:
        first = await model.create_notice(tx, model.NoticeIn("Closed on Monday"))
        second = await model.create_notice(tx, model.NoticeIn("Sale", body="All mugs -20%"))
    assert isinstance(first, model.Notice) and first.body == ""
    assert [n.id for n in await model.latest_notices(db, 10)] == [second.id, first.id]
    async with db.transaction() as tx:
        changed = await model.update_notice(tx, first.id, {"body": "Back on Tuesday"})
        assert changed is not None and changed.body == "Back on Tuesday"
        assert await model.delete_notice(tx, second.id)
        assert not await model.delete_notice(tx, second.id)
    assert await model.get_notice(db, second.id) is None


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    async with app_client(make_settings(data_dir)) as c:
        yield c


async def test_admins_post_everyone_reads_and_reads_follow_writes(client: AsyncTestClient) -> None:
    assert (await client.post("/api/notices", json={"title": "x"})).status_code == 401
    created = await client.post("/api/notices", json={"title": "Closed Monday"}, headers=ADMIN)
    assert created.status_code == 201
    notice = created.json()
    path = f"/api/notices/{notice['id']}"
    assert (await client.get(path)).json()["title"] == "Closed Monday"  # now cached
    assert (await client.get("/api/notices")).json()["items"][0]["id"] == notice["id"]
    r = await client.patch(path, json={"title": "Closed Tuesday"}, headers=ADMIN)
    assert r.status_code == 200
    assert (await client.get(path)).json()["title"] == "Closed Tuesday"  # not the cached one
    assert (await client.get("/api/notices")).json()["items"][0]["title"] == "Closed Tuesday"
    assert (await client.delete(path, headers=ADMIN)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.get("/api/notices")).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [{}, {"title": ""}, {"title": 5}, {"title": "x" * 201}, {"title": "x", "extra": 1}],
)
async def test_bad_bodies_are_422_and_change_nothing(
    client: AsyncTestClient, body: dict[str, object]
) -> None:
    assert (await client.post("/api/notices", json=body, headers=ADMIN)).status_code == 422
    assert (await client.get("/api/notices")).json()["items"] == []


async def test_missing_and_bad_ids(client: AsyncTestClient) -> None:
    assert (await client.get("/api/notices/999")).status_code == 404
    assert (await client.get("/api/notices/0")).status_code in (400, 422)
    r = await client.patch("/api/notices/999", json={"title": "x"}, headers=ADMIN)
    assert r.status_code == 404
    assert (await client.get("/api/notices?limit=0")).status_code in (400, 422)


async def test_the_expiry_job_forgets_old_notices_and_their_cache(svc: Services) -> None:
    async with svc.db.transaction() as tx:
        old = await model.create_notice(tx, model.NoticeIn("Old"))
        new = await model.create_notice(tx, model.NoticeIn("New"))
        await tx.execute(
            "UPDATE notices SET updated_at = ? WHERE id = ?", (time.time() - 91 * 86400, old.id)
        )
    assert await cached_notice_json(svc, old.id) is not None  # cached before the job
    spec = svc.jobs.registry.get(model.EXPIRE_JOB)
    for attempt in (1, 2):  # delivery is at least once: a second run changes nothing
        await spec.fn(JobContext(1, model.EXPIRE_JOB, attempt, 5, None, None, svc.jobs, svc))
    assert await model.get_notice(svc.db, old.id) is None
    assert await cached_notice_json(svc, old.id) is None
    assert await model.get_notice(svc.db, new.id) is not None
    assert model.EXPIRE_JOB in {s.job for s in svc.jobs.registry.schedules.values()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("notices") / "var", workers=2) as srv:
        yield srv


@pytest.mark.slow
def test_a_change_is_seen_by_both_workers(server: ServerProcess) -> None:
    """Each worker caches the notice; a change through one is what both serve next."""
    with httpx.Client(base_url=server.url, timeout=10) as admin:
        notice = admin.post("/api/notices", json={"title": "v1"}, headers=ADMIN).json()
    path = f"/api/notices/{notice['id']}"

    def titles_by_worker(want: str) -> dict[str, str]:
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=server.url, timeout=10) as c:  # a new connection
                r = c.get(path)
                seen[r.headers["x-worker-pid"]] = r.json()["title"]
        assert len(seen) == 2, f"only workers {list(seen)} answered"
        assert set(seen.values()) == {want}
        return seen

    titles_by_worker("v1")
    with httpx.Client(base_url=server.url, timeout=10) as admin:
        r = admin.patch(path, json={"title": "v2"}, headers=ADMIN)
        assert r.status_code == 200
    titles_by_worker("v2")
