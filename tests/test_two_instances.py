"""Two instances behind Caddy: the seed's checklist of what breaks with a second instance.

Two ``monolith serve`` processes (data dirs and ports of their own, ``MONOLITH_RUN_JOBS=no``)
and one ``monolith worker``, all on one PostgreSQL database and one Redis (cache, rate limits,
sessions, pub/sub), with real Caddy balancing between the two instances: the deployment of
docs/SCALING.md, started once for the module. A step about "one instance, then the other"
addresses each instance directly; the load-balanced steps go through Caddy, and the first test
shows that Caddy does use both (``X-Worker-Pid`` names the process that answered, and each
instance knows its own processes).

Uploads stay in each instance's own media directory, so the image step checks that the other
instance does not have the file and that ``monolith doctor`` names exactly that as the problem.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.caddy import CLIENT_ADDRESS, Caddy
from tests.deployment import start_two_instances
from tests.images import png_bytes
from tests.server import ADMIN_TOKEN, ServerProcess, run_cli
from tests.services import (
    REDIS_URL,
    pg_url,
    unique_name,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.caddy,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.shared,
    # It chooses every backend itself, so the scale-out test run would repeat it as it is.
    pytest.mark.profile_independent,
]

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LOGIN_LIMIT = 4
PASSWORD = "correct horse battery staple"
CEILING = 10.0  # a broken deployment fails a step instead of hanging it


@dataclass
class Deployment:
    instances: dict[str, ServerProcess]  # "a" and "b"
    worker: ServerProcess
    caddy: Caddy
    #: The environment of instance "b", for running commands (doctor) there.
    env_b: dict[str, str]

    def url(self, name: str) -> str:
        return self.instances[name].url

    def instance_of(self, response: httpx.Response) -> str:
        """Which instance answered: the one whose processes include the answering pid."""
        pid = int(response.headers["x-worker-pid"])
        names = [n for n, server in self.instances.items() if pid in server.worker_pids()]
        assert len(names) == 1, f"pid {pid} is no worker of either instance"
        return names[0]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("two-instances")
    name = unique_name("monolith_t")
    shared = {
        "MONOLITH_DATABASE_URL": pg_url(name),
        "MONOLITH_CACHE_URL": f"{REDIS_URL}?namespace={name}:cache",
        "MONOLITH_CHANNELS_URL": f"{REDIS_URL}?namespace={name}:channels",
        "MONOLITH_INSTANCES": "2",
        "MONOLITH_RUN_JOBS": "no",
        "MONOLITH_RATE_LIMITS": f"login={LOGIN_LIMIT}/minute,signup=0/minute,api=0/minute",
        "MONOLITH_JOBS_MODULES": "tests.jobs_app",
        "PYTHONPATH": str(ROOT),
    }
    with ExitStack() as stack:
        two = start_two_instances(stack, root, name, shared, workers=1)
        yield Deployment(two.instances, two.worker, two.caddy, two.envs["b"])


def signup(deployment: Deployment, on: str, email: str) -> None:
    r = httpx.post(
        f"{deployment.url(on)}/api/auth/signup",
        json={"email": email, "password": PASSWORD, "name": "Two"},
        timeout=CEILING,
    )
    assert r.status_code == 201, r.text


def create_product(deployment: Deployment, on: str, name: str) -> int:
    r = httpx.post(
        f"{deployment.url(on)}/api/products",
        json={"name": name, "price_cents": 1000, "stock": 5},
        headers=ADMIN,
        timeout=CEILING,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_caddy_spreads_requests_over_both_instances(deployment: Deployment) -> None:
    with deployment.caddy.client() as client:
        answered = Counter(deployment.instance_of(client.get("/health/live")) for _ in range(40))
    assert set(answered) == {"a", "b"}, answered


def test_a_write_on_one_instance_invalidates_what_both_cached(deployment: Deployment) -> None:
    product = create_product(deployment, "a", "Lamp")
    for writer, reader, price in (("b", "a", 1500), ("a", "b", 2500)):
        # Both instances read it (and its catalog page), so either could hold a stale copy.
        for name in ("a", "b"):
            assert httpx.get(f"{deployment.url(name)}/api/products/{product}").status_code == 200
            assert httpx.get(f"{deployment.url(name)}/api/products?limit=100").status_code == 200
        patched = httpx.patch(
            f"{deployment.url(writer)}/api/products/{product}",
            json={"price_cents": price},
            headers=ADMIN,
        )
        assert patched.status_code == 200, patched.text
        one = httpx.get(f"{deployment.url(reader)}/api/products/{product}")
        assert one.json()["price_cents"] == price
        page = httpx.get(f"{deployment.url(reader)}/api/products?limit=100").json()["items"]
        assert [p["price_cents"] for p in page if p["id"] == product] == [price]
    with deployment.caddy.client() as client:
        reads = [client.get(f"/api/products/{product}") for _ in range(20)]
    assert {r.json()["price_cents"] for r in reads} == {2500}
    assert {deployment.instance_of(r) for r in reads} == {"a", "b"}


def test_the_login_limit_is_one_count_across_both_instances(deployment: Deployment) -> None:
    signup(deployment, "a", "limited@example.com")
    wrong = {"email": "limited@example.com", "password": "wrong password"}
    with deployment.caddy.client() as client:
        attempts = [client.post("/api/auth/login", json=wrong) for _ in range(4 * LOGIN_LIMIT)]
    codes = [r.status_code for r in attempts]
    assert sorted(codes) == [401] * LOGIN_LIMIT + [429] * (3 * LOGIN_LIMIT), codes
    assert {deployment.instance_of(r) for r in attempts} == {"a", "b"}
    # The same client (Caddy told both instances who it is) is over the limit on each of them.
    for name in ("a", "b"):
        r = httpx.post(
            f"{deployment.url(name)}/api/auth/login",
            json=wrong,
            headers={"X-Forwarded-For": CLIENT_ADDRESS},
        )
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1


def test_jobs_enqueued_on_either_instance_run_once_on_the_worker(deployment: Deployment) -> None:
    ids: list[int] = []
    for name in ("a", "b"):
        r = httpx.post(
            f"{deployment.url(name)}/api/admin/jobs",
            json={"name": "test.record", "count": 10},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        ids += r.json()["ids"]
    assert len(set(ids)) == 20
    runs_log = deployment.worker.data_dir / "runs.log"
    deadline = time.monotonic() + 30
    while len(lines := runs_log.read_text().splitlines() if runs_log.exists() else []) < 20:
        assert time.monotonic() < deadline, f"only {len(lines)} of 20 jobs ran"
        time.sleep(0.1)
    ran = Counter(int(line.split()[0]) for line in lines)
    assert ran == Counter(ids)  # every job, each once
    assert {int(line.split()[3]) for line in lines} == {deployment.worker.proc.pid}  # type: ignore[union-attr]
    for server in deployment.instances.values():
        assert not (server.data_dir / "runs.log").exists()
    counts = httpx.get(f"{deployment.url('b')}/api/admin/jobs", headers=ADMIN).json()["counts"]
    assert not counts.get("queued") and not counts.get("running") and not counts.get("failed")


def test_a_session_from_one_instance_is_valid_on_the_other(deployment: Deployment) -> None:
    signup(deployment, "b", "roaming@example.com")
    login = httpx.post(
        f"{deployment.url('a')}/api/auth/login",
        json={"email": "roaming@example.com", "password": PASSWORD},
    )
    assert login.status_code == 200, login.text
    cookie = {"Cookie": f"monolith_session={login.cookies['monolith_session']}"}
    me = httpx.get(f"{deployment.url('b')}/api/me", headers=cookie)
    assert me.status_code == 200 and me.json()["email"] == "roaming@example.com"
    with deployment.caddy.client() as client:
        through = [client.get("/api/me", headers=cookie) for _ in range(10)]
    assert {r.status_code for r in through} == {200}
    assert httpx.post(f"{deployment.url('b')}/api/auth/logout", headers=cookie).status_code == 204
    assert httpx.get(f"{deployment.url('a')}/api/me", headers=cookie).status_code == 401


async def test_an_event_on_one_instance_reaches_subscribers_on_the_other(
    deployment: Deployment,
) -> None:
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=deployment.url("b"), timeout=CEILING)
        )
        source = await stack.enter_async_context(
            aconnect_sse(client, "GET", "/api/events", params={"channels": "products"})
        )
        sse = source.aiter_sse()
        assert json.loads((await anext(sse)).data)["type"] == "hello"
        ws_url = deployment.url("a").replace("http://", "ws://") + "/ws/events"
        ws = await stack.enter_async_context(connect(ws_url, open_timeout=CEILING))
        assert json.loads(await ws.recv())["type"] == "hello"

        product = create_product(deployment, "a", "Heard on b")
        event: dict[str, Any] = {}
        while not (event.get("type") == "product.created" and event.get("id") == product):
            event = json.loads((await anext(sse)).data)
        assert event["product"]["name"] == "Heard on b"

        patched = httpx.patch(
            f"{deployment.url('b')}/api/products/{product}", json={"stock": 9}, headers=ADMIN
        )
        assert patched.status_code == 200
        event = {}
        while not (event.get("type") == "product.updated" and event.get("id") == product):
            event = json.loads(await ws.recv())
        assert event["product"]["stock"] == 9


@pytest.fixture(scope="module")
def doctor_report(deployment: Deployment) -> dict[str, Any]:
    """``monolith doctor --json`` as run on instance b."""
    done = run_cli("doctor", "--json", env=deployment.env_b)
    assert "Traceback" not in done.stderr, done.stderr
    return dict(json.loads(done.stdout), exit_code=done.returncode)


def test_an_upload_stays_on_its_instance_and_doctor_says_why(
    deployment: Deployment, doctor_report: dict[str, Any]
) -> None:
    product = create_product(deployment, "a", "Pictured")
    r = httpx.post(
        f"{deployment.url('a')}/api/products/{product}/image",
        files={"file": ("photo.png", png_bytes(), "image/png")},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    image = r.json()["image_url"]
    assert httpx.get(f"{deployment.url('a')}{image}").content == png_bytes()
    # The product row is shared, the file is not: b names the image and cannot serve it.
    assert httpx.get(f"{deployment.url('b')}/api/products/{product}").json()["image_url"] == image
    assert httpx.get(f"{deployment.url('b')}{image}").status_code == 404

    assert doctor_report["exit_code"] == 1 and doctor_report["instances"] == 2
    state = {item["name"]: item for item in doctor_report["state"]}
    problems = {name for name, item in state.items() if item["level"] == "problem"}
    assert problems == {"uploads"}
    uploads = state["uploads"]
    assert uploads["scope"] == "box"
    assert "a 404 on the other" in uploads["breaks"]
    assert "network filesystem" in uploads["fix"]
    shared = ("database", "cache", "rate limits", "sessions", "session key", "jobs", "schedules")
    for name in (*shared, "pub/sub"):
        assert (state[name]["scope"], state[name]["level"]) == ("shared", "ok"), state[name]
    # Every backend answered and the settings are right: uploads are the only problem.
    assert [c for c in doctor_report["checks"] if c["level"] == "problem"] == []
    reached = {c["check"]: c["message"] for c in doctor_report["checks"]}
    assert reached["database"].endswith("answers")
    assert reached["cache, rate limits, sessions"].endswith("answers")


def test_no_instance_keeps_state_in_app_state(doctor_report: dict[str, Any]) -> None:
    [found] = [c for c in doctor_report["checks"] if c["check"] == "app.state"]
    assert found["level"] == "ok", found
