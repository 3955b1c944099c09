"""Losing the box loses nothing, on real processes: ``monolith serve --workers 2`` taking
orders while ``monolith replicate`` (Litestream) streams the database to a replica in a
directory or on a real S3-protocol server (moto); the box is lost with kill -9 and its data
dir deleted; ``monolith restore --from-replica`` on a fresh data dir brings back every order
acknowledged more than the lag bound before the loss. A point-in-time restore holds exactly
the orders before the time; a warm standby follows a primary under load within its bound
and, promoted, serves writes.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from monolith.config import ReplicationSettings
from monolith.replication.status import STATUS_FILE
from tests.litestream import require_litestream
from tests.s3server import S3Server, s3_server  # noqa: F401 - the fixture, for `replica`
from tests.server import ServerProcess, box_env, run_cli
from tests.test_orders_processes import account, new_product, one

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]

#: The documented bound with the default MONOLITH_REPLICA_SYNC_SECONDS (1 s): 3 s.
LAG_BOUND = ReplicationSettings().lag_bound
DEADLINE = 60.0


def wait_for(what: str, ok: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


@pytest.fixture(params=["file", "s3"])
def replica(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment that points a box at a fresh replica (a directory, or an S3 bucket)."""
    env = {"MONOLITH_LITESTREAM": require_litestream()}
    if request.param == "file":
        env["MONOLITH_REPLICA_URL"] = f"file://{tmp_path / 'replica'}"
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        env.update(s3.env(), MONOLITH_REPLICA_URL=s3.url(s3.bucket("replica"), "shop/db"))
    return env


def box(
    root: Path, name: str, replica: dict[str, str], **extra: str
) -> tuple[Path, dict[str, str]]:
    data_dir = root / name / "var"
    data_dir.mkdir(parents=True)
    return data_dir, box_env(data_dir, **replica, **extra)


class OrderLoad:
    """Threads placing orders one after another; each acknowledged order is kept with the
    time its 201 arrived (after its commit)."""

    def __init__(self, url: str, users: list[dict[str, str]], product: int) -> None:
        self.url, self.users, self.product = url, users, product
        self.acked: list[tuple[int, float]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._place, args=(u,)) for u in users]

    def _place(self, user: dict[str, str]) -> None:
        with httpx.Client(base_url=self.url, headers=user, timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    r = client.post("/api/orders", json=one(self.product))
                except httpx.HTTPError:
                    continue  # the box is gone: nothing acknowledged
                if r.status_code == 201:
                    with self._lock:
                        self.acked.append((int(r.json()["id"]), time.time()))

    def __enter__(self) -> OrderLoad:
        for t in self._threads:
            t.start()
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def acked_before(self, moment: float) -> set[int]:
        with self._lock:
            return {oid for oid, at in self.acked if at < moment}

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self._threads:
            t.join(30)


def order_ids(db: Path) -> set[int]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {int(r[0]) for r in conn.execute("SELECT id FROM orders")}
    finally:
        conn.close()


def status(data_dir: Path) -> dict[str, object]:
    try:
        raw: dict[str, object] = json.loads((data_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return raw


def replicating(data_dir: Path) -> bool:
    """monolith replicate has written its status and the replica has received a change."""
    return status(data_dir).get("last_replicated_at") is not None


def restore(data_dir: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    done = run_cli("restore", "--from-replica", "--json", *args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    assert result["integrity"] == "ok" and result["path"] == str(data_dir / "monolith.db")
    return result


def shop(url: str, users: int, stock: int) -> tuple[list[dict[str, str]], int]:
    people = [account(url, f"buyer{i}@example.com") for i in range(users)]
    return people, new_product(url, "Lamp", stock)


def primary_box(
    stack: ExitStack, data_dir: Path, env: dict[str, str], users: int, stock: int
) -> tuple[ServerProcess, ServerProcess, list[dict[str, str]], int]:
    """``serve --workers 2`` and ``monolith replicate`` on one data dir, stopped with ``stack``;
    signed-in buyers and a product, once the replica has received its first change."""
    serve = stack.enter_context(ServerProcess(data_dir, workers=2, env=env))
    replicate = ServerProcess(data_dir, command=("replicate",), env=env).start()
    stack.callback(replicate.stop)
    people, product = shop(serve.url, users=users, stock=stock)
    wait_for("the replica's first change", lambda: replicating(data_dir))
    return serve, replicate, people, product


def test_losing_the_box_loses_no_order_acknowledged_before_the_lag_bound(
    tmp_path: Path, replica: dict[str, str]
) -> None:
    data_dir, env = box(tmp_path, "primary", replica)
    with ExitStack() as stack:
        serve, replicate, users, lamp = primary_box(stack, data_dir, env, 4, 100_000)
        with OrderLoad(serve.url, users, lamp) as load:
            # Long enough that most orders are older than the bound when the box is lost.
            until = time.time() + 4 * LAG_BOUND
            # The nightly backup runs beside Litestream without getting in its way.
            backup = run_cli("backup", env=env, timeout=120)
            assert backup.returncode == 0, backup.stderr
            wait_for("orders for a while", lambda: time.time() > until and load.count() >= 100)
            lost_at = time.time()
            replicate.kill9()  # the box is lost: nothing gets to flush or say goodbye
            serve.kill9()
    acked = load.acked_before(lost_at + 1)  # every 201 that arrived before the loss
    shutil.rmtree(data_dir)

    fresh_dir, fresh_env = box(tmp_path, "replacement", replica)
    result = restore(fresh_dir, fresh_env)
    restored = order_ids(fresh_dir / "monolith.db")
    must_have = load.acked_before(lost_at - LAG_BOUND)
    lost = acked - restored
    oldest_lost = max((lost_at - at for oid, at in load.acked if oid in lost), default=0.0)
    print(
        f"\n{replica['MONOLITH_REPLICA_URL'].split(':')[0]} replica: {len(acked)} orders "
        f"acknowledged, {len(acked & restored)} restored, {len(lost)} lost (the oldest "
        f"acknowledged {oldest_lost:.2f}s before the loss; bound {LAG_BOUND:g}s); restored as "
        f"of {result['point_in_time']}, loss at {datetime.fromtimestamp(lost_at, UTC).isoformat()}"
    )
    assert must_have and must_have <= restored
    assert not lost & must_have


def test_a_point_in_time_restore_holds_exactly_the_orders_before_the_time(
    tmp_path: Path, replica: dict[str, str]
) -> None:
    # No job runner: the orders stay as placed, and nothing else writes between the batches.
    data_dir, env = box(tmp_path, "primary", replica, MONOLITH_RUN_JOBS="no")
    with ExitStack() as stack:
        serve, _, users, lamp = primary_box(stack, data_dir, env, 2, 1000)

        def batch(n: int) -> set[int]:
            with httpx.Client(base_url=serve.url, headers=users[0], timeout=10) as client:
                placed = [client.post("/api/orders", json=one(lamp)) for _ in range(n)]
            assert {r.status_code for r in placed} == {201}
            return {int(r.json()["id"]) for r in placed}

        first = batch(20)
        first_done = time.time()
        sync = float(env.get("MONOLITH_REPLICA_SYNC_SECONDS") or 1.0)

        def holds_first() -> bool:
            # Litestream read the WAL after the batch (one interval), and the replica holds
            # all it read.
            s = status(data_dir)
            return float(s.get("updated_at", 0)) - sync > first_done and s.get("lag_seconds") == 0

        wait_for("the first batch in the replica", holds_first)
        # Replica objects carry times to the second (S3): a clear second on each side of T.
        moment = time.time() + 1.1
        wait_for("the clock past T", lambda: time.time() > moment + 1.1)
        second = batch(20)
        wait_for(
            "the second batch in the replica", lambda: status(data_dir).get("lag_seconds") == 0
        )

    fresh_dir, fresh_env = box(tmp_path, "restored", replica)
    stamp = datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    result = restore(fresh_dir, fresh_env, "--timestamp", stamp)
    assert order_ids(fresh_dir / "monolith.db") == first
    assert datetime.fromisoformat(str(result["point_in_time"])).timestamp() <= moment
    assert result["requested"] == datetime.fromtimestamp(moment, UTC).isoformat()

    latest_dir, latest_env = box(tmp_path, "latest", replica)
    restore(latest_dir, latest_env)
    assert order_ids(latest_dir / "monolith.db") == first | second


def ready(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.get(f"{url}/health/ready")


def stock(url: str, product: int) -> int:
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{url}/api/products/{product}")
    assert r.status_code == 200, r.text
    return int(r.json()["stock"])


def test_a_standby_follows_the_primary_within_its_bound_and_promoted_serves_writes(
    tmp_path: Path, replica: dict[str, str]
) -> None:
    max_lag = 10.0
    primary_dir, primary_env = box(tmp_path, "primary", replica)
    standby_dir, standby_env = box(
        tmp_path, "standby", replica, MONOLITH_STANDBY_MAX_LAG_SECONDS=str(max_lag)
    )
    initial = 100_000
    with ExitStack() as stack:
        # The primary box: the app and the replicator.
        primary, replicate, users, lamp = primary_box(stack, primary_dir, primary_env, 3, initial)

        # The standby box (docs/DEPLOY.md, "A warm standby"): monolith standby, then the app.
        standby = ServerProcess(standby_dir, command=("standby",), env=standby_env).start()
        stack.callback(standby.stop)
        wait_for("the standby's first copy", lambda: (standby_dir / "monolith.db").exists())
        wait_for(
            "the standby's status",
            lambda: "restored_at" in (standby_dir / "standby.json").read_text(),
        )
        reader = stack.enter_context(ServerProcess(standby_dir, workers=1, env=standby_env))

        with OrderLoad(primary.url, users, lamp) as load:
            for _ in range(3):
                target = load.count() + 150
                wait_for("more orders on the primary", lambda t=target: load.count() >= t)
                checked_at = time.time()
                left = stock(reader.url, lamp)
                answer = ready(reader.url)
                assert answer.status_code == 200, answer.text
                behind = answer.json()["standby"]["behind_seconds"]
                assert 0 <= behind <= max_lag
                # Every order acknowledged before the bound is in the standby's copy.
                settled = load.acked_before(checked_at - max_lag - LAG_BOUND)
                assert left <= initial - len(settled)
            # And it follows: the orders placed so far show on the standby.
            placed = load.count()
            wait_for("the standby catching up", lambda: stock(reader.url, lamp) <= initial - placed)
            refused = httpx.post(f"{reader.url}/api/auth/signup", json={}, timeout=10)
            assert refused.status_code == 503 and "standby mode" in refused.json()["detail"]
            assert refused.headers["retry-after"]

            # The primary box is lost.
            lost_at = time.time()
            replicate.kill9()
            primary.kill9()

        # Failover (docs/DEPLOY.md): stop the standby, promote, restart the app, replicate.
        started = time.monotonic()
        assert standby.stop() == 0
        promoted = run_cli("promote", "--json", env=standby_env, timeout=120)
        assert promoted.returncode == 0, promoted.stderr
        promote_took = time.monotonic() - started
        assert json.loads(promoted.stdout)["integrity"] == "ok"
        reader.stop()
        restart = time.monotonic()
        app = stack.enter_context(ServerProcess(standby_dir, workers=2, env=standby_env))
        restart_took = time.monotonic() - restart
        new_replicate = ServerProcess(standby_dir, command=("replicate",), env=standby_env).start()
        stack.callback(new_replicate.stop)

        buyer = account(app.url, "after-failover@example.com")
        with httpx.Client(base_url=app.url, headers=buyer, timeout=10) as client:
            order = client.post("/api/orders", json=one(lamp))
        assert order.status_code == 201, order.text
        serving_took = time.monotonic() - started
        wait_for("the new primary replicating", lambda: replicating(standby_dir))
        assert "standby" not in ready(app.url).json()

        kept = order_ids(standby_dir / "monolith.db")
        assert load.acked_before(lost_at - LAG_BOUND) <= kept
        print(
            f"\nfailover ({replica['MONOLITH_REPLICA_URL'].split(':')[0]} replica): promote "
            f"{promote_took:.2f}s, app restarted and ready {restart_took:.2f}s, first write "
            f"accepted {serving_took:.2f}s after the failover began; {len(load.acked)} orders "
            f"acknowledged by the old primary, {len(load.acked_before(lost_at + 1) - kept)} "
            f"lost (bound {LAG_BOUND:g}s)"
        )
