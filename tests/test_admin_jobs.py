"""The admin job API against the real app (its runner runs in this process, on SQLite)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from tests.apphelpers import ADMIN, app_client, make_settings


async def _until(client: AsyncTestClient, state: str, within: float = 20) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        r = await client.get(f"/api/admin/jobs?state={state}", headers=ADMIN)
        assert r.status_code == 200
        if r.json()["jobs"]:
            return list(r.json()["jobs"])
        assert time.monotonic() < deadline, f"no {state} job appeared"
        await asyncio.sleep(0.05)


async def test_admins_list_retry_and_discard_jobs(data_dir: Path) -> None:
    settings = make_settings(data_dir, MONOLITH_JOBS_GRACE_SECONDS="0")
    async with app_client(settings) as client:
        assert (await client.get("/api/admin/jobs")).status_code == 401
        bad = {"name": "ops.ping", "payload": {"seconds": "soon"}}
        r = await client.post("/api/admin/jobs", json=bad, headers=ADMIN)
        assert r.status_code == 201, r.text
        [job_id] = r.json()["ids"]
        [failed] = await _until(client, "failed")
        assert failed["id"] == job_id
        assert "ValueError" in failed["last_error"]

        r = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=ADMIN)
        assert r.status_code == 200
        assert r.json()["state"] == "queued"
        await _until(client, "failed")
        assert (await client.delete(f"/api/admin/jobs/{job_id}", headers=ADMIN)).status_code == 204
        r = await client.delete(f"/api/admin/jobs/{job_id}", headers=ADMIN)
        assert r.status_code == 404
        assert r.json() == {"status_code": 404, "detail": f"job {job_id} not found"}

        slow = {"name": "ops.ping", "payload": {"seconds": 60}}
        [running_id] = (await client.post("/api/admin/jobs", json=slow, headers=ADMIN)).json()[
            "ids"
        ]
        await _until(client, "running")
        for r in (
            await client.post(f"/api/admin/jobs/{running_id}/retry", headers=ADMIN),
            await client.delete(f"/api/admin/jobs/{running_id}", headers=ADMIN),
        ):
            assert r.status_code == 409
            assert "running" in r.json()["detail"]


async def test_bad_admin_job_requests_are_4xx_and_change_nothing(data_dir: Path) -> None:
    async with app_client(make_settings(data_dir)) as client:
        r = await client.get("/api/admin/jobs?state=sleeping", headers=ADMIN)
        assert r.status_code == 422
        assert r.json()["detail"].startswith("state")
        r = await client.post("/api/admin/jobs", json={"name": "no.such"}, headers=ADMIN)
        assert r.status_code == 422
        assert r.json()["detail"].startswith("name: ")
        r = await client.post(
            "/api/admin/jobs", json={"name": "ops.ping", "count": 0}, headers=ADMIN
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("count")
        r = await client.post(
            "/api/admin/jobs",
            content=b"{nope",
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert r.status_code == 400
        assert (await client.get("/api/admin/jobs", headers=ADMIN)).json()["jobs"] == []


async def test_readiness_reports_the_job_runner(data_dir: Path) -> None:
    async with app_client(make_settings(data_dir)) as client:
        r = await client.get("/health/ready")
        assert r.status_code == 200
        assert r.json()["checks"]["jobs"].startswith("ok")


async def test_admins_cancel_a_running_job_and_see_it_end_cancelled(data_dir: Path) -> None:
    async with app_client(make_settings(data_dir)) as client:
        slow = {"name": "ops.ping", "payload": {"seconds": 120}}
        [job_id] = (await client.post("/api/admin/jobs", json=slow, headers=ADMIN)).json()["ids"]
        await _until(client, "running")
        assert (await client.post(f"/api/admin/jobs/{job_id}/cancel")).status_code == 401
        r = await client.post(f"/api/admin/jobs/{job_id}/cancel", headers=ADMIN)
        assert r.status_code == 202
        assert r.json()["state"] == "running"
        # ops.ping does not look at ctx.cancelled: its runner stops it after the grace.
        [cancelled] = await _until(client, "cancelled", within=30)
        assert cancelled["id"] == job_id
        r = await client.post(f"/api/admin/jobs/{job_id}/cancel", headers=ADMIN)
        assert r.status_code == 409
        r = await client.post("/api/admin/jobs/999999/cancel", headers=ADMIN)
        assert r.status_code == 404


async def test_admins_pause_and_resume_a_queue_and_see_done_jobs(data_dir: Path) -> None:
    settings = make_settings(data_dir, MONOLITH_JOBS_QUEUE_LIMITS="default=7")
    async with app_client(settings) as client:
        r = await client.get("/api/admin/jobs/queues", headers=ADMIN)
        assert r.status_code == 200
        [default] = [q for q in r.json()["queues"] if q["name"] == "default"]
        assert (default["paused"], default["limit"]) == (False, 7)
        r = await client.post("/api/admin/jobs/queues/default/pause", headers=ADMIN)
        assert r.status_code == 200
        assert r.json()["paused"] is True
        ping = {"name": "ops.ping", "count": 3}
        ids = (await client.post("/api/admin/jobs", json=ping, headers=ADMIN)).json()["ids"]
        r = await client.get("/api/admin/jobs/queues", headers=ADMIN)
        [default] = [q for q in r.json()["queues"] if q["name"] == "default"]
        assert (default["paused"], default["counts"]["queued"]) == (True, 3)
        r = await client.post("/api/admin/jobs/queues/default/resume", headers=ADMIN)
        assert r.json()["paused"] is False
        deadline = time.monotonic() + 20
        while len([j for j in await _until(client, "done") if j["id"] in ids]) < 3:
            assert time.monotonic() < deadline, "the resumed queue's jobs did not run"
            await asyncio.sleep(0.05)
        counts = (await client.get("/api/admin/jobs", headers=ADMIN)).json()["counts"]
        assert counts["done"] >= 3  # kept after success, for the retention period
        long_name = "q" * 201
        r = await client.post(f"/api/admin/jobs/queues/{long_name}/pause", headers=ADMIN)
        assert r.status_code in (400, 422)
