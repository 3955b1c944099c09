"""A plain Litestar app (tests/plain_litestar_app.py: no monolith wiring, only the store) on
granian with two workers: a server-side session written through one worker is read through
the other, and a cached response made by one worker is what the other serves. On the disk
store and on Redis.

granian's workers share the port (``SO_REUSEPORT``), so the test opens connections until it
has one to each worker, reading which worker answered from the response.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port, redis_delete_prefix, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]

ROOT = Path(__file__).resolve().parent.parent
CEILING = 10.0


class Granian:
    def __init__(self, store_url: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        env = {**os.environ, "PLAIN_APP_STORE_URL": store_url}
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "granian"),
                "--interface", "asgi",
                "--workers", "2",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "tests.plain_litestar_app:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.log_path = log

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"granian exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/pid", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"granian not ready:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, 9)  # anything of its group left behind
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(params=["disk", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "disk":
        yield f"disk://{tmp_path / 'store'}"
        return
    namespace = unique_name("monolith_plain")
    yield f"{request.getfixturevalue('redis_url')}?namespace={namespace}"
    redis_delete_prefix(namespace)


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Granian]:
    granian = Granian(store_url, tmp_path / "granian.log")
    try:
        granian.wait_ready()
        yield granian
    finally:
        granian.stop()


def on_worker(server: Granian, *, avoid: int | None = None) -> tuple[httpx.Client, int]:
    """A keep-alive client on one worker (a different one from ``avoid``)."""
    for _ in range(200):
        client = httpx.Client(base_url=server.url, timeout=CEILING)
        pid = int(client.get("/pid").json()["pid"])
        if pid != avoid:
            return client, pid
        client.close()
    pytest.fail("every new connection reached the same worker")


@pytest.fixture
def two_workers(server: Granian) -> Iterator[tuple[tuple[httpx.Client, int], ...]]:
    first = on_worker(server)
    second = on_worker(server, avoid=first[1])
    yield first, second
    first[0].close()
    second[0].close()


def test_a_session_written_through_one_worker_is_read_through_the_other(
    two_workers: tuple[tuple[httpx.Client, int], ...],
) -> None:
    (first, first_pid), (second, second_pid) = two_workers
    r = first.post("/session", json={"user": "ada"})
    assert r.status_code == 201, r.text
    assert r.json()["pid"] == first_pid
    cookie = r.cookies["session"]

    r = second.get("/session", headers={"Cookie": f"session={cookie}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"pid": second_pid, "session": {"user": "ada"}}

    second.cookies.clear()
    r = second.get("/session")  # no cookie, no session
    assert r.json()["session"] == {}


def test_a_cached_response_made_by_one_worker_is_served_by_the_other(
    two_workers: tuple[tuple[httpx.Client, int], ...],
) -> None:
    (first, first_pid), (second, second_pid) = two_workers
    made = first.get("/cached")
    assert made.status_code == 200, made.text
    assert made.json()["pid"] == first_pid
    served = second.get("/cached")
    assert served.status_code == 200
    assert served.json() == made.json()  # the first worker's body, from the shared store
    assert second.get("/pid").json()["pid"] == second_pid
