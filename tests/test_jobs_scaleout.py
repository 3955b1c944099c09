"""Queue controls with real runner processes, each on SQLite and on PostgreSQL.

Every test starts real ``monolith worker`` processes (several where the behaviour is about
several) in a data dir of its own, on a SQLite file or a fresh PostgreSQL database, with the
test jobs of :mod:`tests.jobs_app`, and reads what ran from the logs those jobs append to and
from the database. The last test is the two-instance deployment of
the scale-out acceptance: two ``serve`` instances on PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from monolith.db import open_database
from monolith.jobqueue.base import MAX_RESCUES
from tests.server import ADMIN_TOKEN, ServerProcess, base_env, run_cli
from tests.services import (
    REDIS_URL,
    pg_admin,
    pg_url,
    redis_delete_prefix,
    require_postgres,
    require_redis,
    unique_name,
)
from tests.test_jobs_processes import eventually

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class App:
    """One deployment's data dir and environment (its database chosen by the backend)."""

    data_dir: Path
    env: dict[str, str]

    def with_env(self, **extra: str) -> App:
        return App(self.data_dir, {**self.env, **extra})

    def worker(self, *args: str) -> ServerProcess:
        return ServerProcess(self.data_dir, command=("worker", *args), env=self.env).start()

    def cli(self, *args: str) -> Any:
        done = run_cli("jobs", *args, "--json", env=self.env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def enqueue(self, name: str, *args: str) -> list[int | None]:
        return list(self.cli("enqueue", name, *args)["ids"])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        url = self.env["MONOLITH_DATABASE_URL"] or f"sqlite:///{self.data_dir / 'monolith.db'}"

        async def fetch() -> list[tuple[Any, ...]]:
            db = open_database(url)
            await db.start()
            try:
                return [tuple(row) for row in await db.fetch_all(sql)]
            finally:
                await db.stop()

        return list(asyncio.run(fetch()))

    def runners(self) -> int:
        """Runners that reported in (0 while the first process is still migrating)."""
        try:
            return int(self.query("SELECT COUNT(*) FROM job_runners")[0][0])
        except Exception:
            return 0

    def job(self, job_id: int | None) -> dict[str, Any]:
        rows = self.query(
            "SELECT state, attempts, rescues, last_error FROM jobs WHERE id = " + str(job_id)
        )
        assert rows, f"job {job_id} is gone"
        return dict(zip(("state", "attempts", "rescues", "last_error"), rows[0], strict=True))

    def lines(self, file: str) -> list[list[str]]:
        try:
            return [line.split() for line in (self.data_dir / file).read_text().splitlines()]
        except FileNotFoundError:
            return []


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    common = {
        "MONOLITH_JOBS_MODULES": "tests.jobs_app",
        "PYTHONPATH": str(ROOT),
        "MONOLITH_JOBS_LEASE_SECONDS": "2",
        "MONOLITH_CACHE_URL": "",
        "MONOLITH_CHANNELS_URL": "",
    }
    if request.param == "sqlite":
        yield App(data_dir, base_env(data_dir, MONOLITH_DATABASE_URL="", **common))
        return
    require_postgres()
    name = unique_name("monolith_jobs")
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield App(data_dir, base_env(data_dir, MONOLITH_DATABASE_URL=pg_url(name), **common))
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (an end before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_a_queue_limit_holds_across_four_runner_processes(app: App) -> None:
    app = app.with_env(
        MONOLITH_JOBS_QUEUE_LIMITS="limited=2",
        MONOLITH_JOBS_CONCURRENCY="10",
    )
    workers = [app.worker() for _ in range(4)]
    try:
        eventually(lambda: app.runners() == 4, 90, "four runners are up")
        ids = app.enqueue("test.span", "--count", "16", "--payload", '{"sleep": 0.4}')
        eventually(lambda: len(app.lines("spans.log")) == 16, 120, "every capped job ran")
    finally:
        for w in workers:
            w.stop()
    rows = app.lines("spans.log")
    assert sorted(int(r[0]) for r in rows) == sorted(i for i in ids if i is not None)
    spans = [(float(r[2]), float(r[3])) for r in rows]
    assert peak_overlap(spans) <= 2


def test_a_paused_queue_stays_paused_for_every_runner_and_across_restarts(app: App) -> None:
    paused = app.cli("pause", "mail")
    assert paused == {"queue": "mail", "paused": True}
    [mail_id] = app.enqueue("test.mail")
    [first] = app.enqueue("test.record")
    worker = app.worker()
    try:
        eventually(lambda: len(app.lines("runs.log")) == 1, 60, "the other queue's job ran")
        assert app.lines("mail.log") == []
        assert app.job(mail_id)["state"] == "queued"
    finally:
        worker.stop()
    # A new process (a restart, or another instance) sees the pause from the database.
    worker = app.worker()
    try:
        app.enqueue("test.record")
        eventually(lambda: len(app.lines("runs.log")) == 2, 60, "a later job ran")
        assert app.lines("mail.log") == []
        queues = {q["name"]: q for q in app.cli("queues")}
        assert queues["mail"]["paused"] is True
        assert queues["mail"]["counts"]["queued"] == 1
        assert app.cli("resume", "mail") == {"queue": "mail", "paused": False}
        eventually(lambda: len(app.lines("mail.log")) == 1, 60, "the resumed queue's job ran")
    finally:
        worker.stop()
    assert app.job(mail_id)["state"] == "done"
    assert first is not None


def test_a_worker_given_queues_takes_only_their_jobs(app: App) -> None:
    [record_id] = app.enqueue("test.record")
    [mail_id] = app.enqueue("test.mail")
    mail_only = app.worker("--queues", "mail")
    try:
        eventually(lambda: len(app.lines("mail.log")) == 1, 60, "the mail job ran")
        assert app.lines("runs.log") == []
        assert app.job(record_id)["state"] == "queued"
    finally:
        mail_only.stop()
    # MONOLITH_JOBS_QUEUES is the same for serve's runners and a worker without --queues.
    default_only = app.with_env(MONOLITH_JOBS_QUEUES="default").worker()
    try:
        eventually(lambda: len(app.lines("runs.log")) == 1, 60, "the default job ran")
    finally:
        default_only.stop()
    assert app.job(mail_id)["state"] == "done"


def test_cancelling_a_running_job_tells_it_through_its_context(app: App) -> None:
    [job_id] = app.enqueue("test.listen")
    worker = app.worker()
    try:
        eventually(lambda: [str(job_id), "started"] in app.lines("events.log"), 60, "it started")
        cancelled = app.cli("cancel", str(job_id))
        assert cancelled["state"] == "running"  # told; it stops on its own
        eventually(lambda: app.job(job_id)["state"] == "cancelled", 60, "it ended cancelled")
        assert [str(job_id), "saw", "the", "cancel"] in app.lines("events.log")
        assert app.job(job_id)["last_error"] == "cancelled (it returned)"
        # Cancelled is final: it does not run again, and cannot be cancelled twice.
        again = run_cli("jobs", "cancel", str(job_id), env=app.env)
        assert again.returncode == 1
        assert f"job {job_id} is cancelled" in again.stderr
    finally:
        worker.stop()


def test_a_timeout_ends_a_job_that_does_not_listen(app: App) -> None:
    # A grace longer than the job's timeout: the timeout is what ends the cancelled one.
    app = app.with_env(MONOLITH_JOBS_CANCEL_GRACE="60s")
    [timed_out] = app.enqueue("test.deaf")
    [cancelled] = app.enqueue("test.deaf_slow")
    worker = app.worker()
    try:
        both = {str(timed_out), str(cancelled)}
        eventually(lambda: {r[0] for r in app.lines("events.log")} == both, 60, "both started")
        app.cli("cancel", str(cancelled))
        ended = {"failed", "cancelled"}
        eventually(
            lambda: {app.job(i)["state"] for i in (timed_out, cancelled)} == ended, 60, "both ended"
        )
    finally:
        worker.stop()
    # Not cancelled: its 2 s timeout fails it (one attempt). Cancelled but not listening: its
    # 8 s timeout (shorter than the grace) ends it, and it ends cancelled, not retried.
    assert app.job(timed_out) == {
        "state": "failed",
        "attempts": 1,
        "rescues": 0,
        "last_error": "timed out after 2s",
    }
    assert app.job(cancelled)["state"] == "cancelled"
    assert app.job(cancelled)["attempts"] == 1
    assert "timed out after 8s" in app.job(cancelled)["last_error"]


def test_finished_jobs_are_kept_for_the_retention_then_pruned(app: App) -> None:
    app = app.with_env(MONOLITH_JOBS_KEEP="12s", MONOLITH_JOBS_PRUNE_EVERY="1s")
    ids = app.enqueue("test.record", "--count", "5")
    worker = app.worker()
    try:
        eventually(lambda: len(app.lines("runs.log")) == 5, 60, "the jobs ran")
        done = app.cli("list", "--state", "done")
        assert sorted(j["id"] for j in done if j["name"] == "test.record") == sorted(ids)  # type: ignore[type-var]
        assert app.cli("stats")["counts"]["done"] >= 5
        eventually(
            lambda: app.query("SELECT COUNT(*) FROM jobs WHERE name = 'test.record'") == [(0,)],
            90,
            "the done jobs were pruned",
        )
    finally:
        worker.stop()
    assert [j for j in app.cli("list", "--state", "done") if j["name"] == "test.record"] == []


def test_ids_are_never_reused_after_jobs_are_pruned(app: App) -> None:
    app = app.with_env(MONOLITH_JOBS_KEEP="0s", MONOLITH_JOBS_PRUNE_EVERY="0.5s")
    worker = app.worker()
    try:
        first = app.enqueue("test.record", "--count", "3")
        eventually(
            lambda: app.query("SELECT COUNT(*) FROM jobs WHERE name = 'test.record'") == [(0,)],
            60,
            "the jobs ran and were pruned",
        )
        second = app.enqueue("test.record", "--count", "3")
        eventually(lambda: len(app.lines("runs.log")) == 6, 60, "the second jobs ran")
    finally:
        worker.stop()
    assert min(i for i in second if i is not None) > max(i for i in first if i is not None)
    assert len({r[0] for r in app.lines("runs.log")}) == 6  # six ids, six jobs


def test_a_killed_runner_does_not_use_up_the_attempt_and_rescues_are_bounded(app: App) -> None:
    # A job allowed one attempt, in hand when its runner is killed, runs again elsewhere.
    [job_id] = app.enqueue("test.once", "--payload", '{"sleep": 3}')
    doomed = app.worker()
    eventually(lambda: len(app.lines("events.log")) == 1, 60, "it started")
    doomed.kill9()
    doomed.stop()
    survivor = app.worker()
    try:
        eventually(lambda: app.job(job_id)["state"] == "done", 60, "it ran again and finished")
    finally:
        survivor.stop()
    assert app.job(job_id)["attempts"] == 1
    assert app.job(job_id)["rescues"] == 1
    assert [r[2] for r in app.lines("events.log")] == ["started", "started", "finished"]

    # A job that kills every runner that takes it stops after MAX_RESCUES rescues.
    [crash_id] = app.enqueue("test.crash")
    crashes = lambda: [r for r in app.lines("events.log") if r[2] == "crashing"]  # noqa: E731
    for n in range(1, MAX_RESCUES + 2):
        proc = app.worker()
        eventually(lambda n=n: len(crashes()) == n, 60, f"crash {n}")  # type: ignore[misc]
        assert proc.proc is not None
        assert proc.proc.wait(timeout=30) == -signal.SIGKILL
        proc.stop()
    last = app.worker()
    try:
        eventually(lambda: app.job(crash_id)["state"] == "failed", 60, "it was given up")
    finally:
        last.stop()
    job = app.job(crash_id)
    assert len(crashes()) == MAX_RESCUES + 1
    assert (job["attempts"], job["rescues"]) == (1, MAX_RESCUES + 1)
    assert "runner stopped without finishing it 4 times" in job["last_error"]


def test_a_failed_unique_job_does_not_block_a_new_one_with_its_key(app: App) -> None:
    [first] = app.enqueue("test.flaky", "--unique-key", "sync:42")
    assert first is not None
    assert app.enqueue("test.flaky", "--unique-key", "sync:42") == [None]  # queued: held
    worker = app.worker()
    try:
        eventually(lambda: app.job(first)["state"] == "failed", 60, "it failed for good")
        # Fixed first: a runner may take the new job (and use up its two quick attempts)
        # before the enqueue command has even returned.
        (app.data_dir / "fixed").touch()
        [second] = app.enqueue("test.flaky", "--unique-key", "sync:42")
        assert second is not None
        assert second > first
        eventually(lambda: app.job(second)["state"] == "done", 60, "the new one succeeded")
    finally:
        worker.stop()
    # Done and not held after success (no unique_for): the key is free again.
    assert app.enqueue("test.flaky", "--unique-key", "sync:42", "--delay", "3600") != [None]


def test_two_instances_on_postgresql_run_each_job_once_across_their_runners(
    tmp_path: Path,
) -> None:
    require_postgres()
    require_redis()
    name = unique_name("monolith_jobs2")
    shared = {
        "MONOLITH_DATABASE_URL": pg_url(name),
        "MONOLITH_CACHE_URL": f"{REDIS_URL}?namespace={name}:cache",
        "MONOLITH_CHANNELS_URL": f"{REDIS_URL}?namespace={name}:channels",
        "MONOLITH_INSTANCES": "2",
        "MONOLITH_JOBS_MODULES": "tests.jobs_app",
        "MONOLITH_JOBS_CONCURRENCY": "5",
        "PYTHONPATH": str(ROOT),
    }
    pg_admin(f'CREATE DATABASE "{name}"')
    servers: list[ServerProcess] = []
    try:
        for role in ("a", "b"):
            data_dir = tmp_path / role / "var"
            data_dir.mkdir(parents=True)
            servers.append(ServerProcess(data_dir, workers=2, env=base_env(data_dir, **shared)))
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        runners = set().union(*(s.worker_pids() for s in servers))
        assert len(runners) == 4
        ids: list[int] = []
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        body = {"name": "test.record", "payload": {"sleep": 0.05}, "count": 10}
        for batch in range(20):  # through both instances, in turn
            server = servers[batch % 2]
            r = httpx.post(f"{server.url}/api/admin/jobs", json=body, headers=headers, timeout=30)
            assert r.status_code == 201, r.text
            ids += r.json()["ids"]
        assert len(set(ids)) == 200

        def ran() -> list[list[str]]:
            return [line for s in servers for line in App(s.data_dir, {}).lines("runs.log")]

        eventually(lambda: len(ran()) >= 200, 120, "every job ran")
        eventually(
            lambda: (
                App(servers[0].data_dir, servers[0].env).query(
                    "SELECT COUNT(*) FROM jobs WHERE name = 'test.record' AND state = 'done'"
                )
                == [(200,)]
            ),
            60,
            "every job was recorded done",
        )
    finally:
        for server in servers:
            server.stop()
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        redis_delete_prefix(f"{name}:")
    counts = Counter(int(line[0]) for line in ran())
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}, "a job ran more than once"
    pids = Counter(int(line[3]) for line in ran())
    assert set(pids) <= runners
    assert len(pids) >= 3, f"jobs ran in {len(pids)} runner processes: {dict(pids)}"
    assert os.getpid() not in pids
