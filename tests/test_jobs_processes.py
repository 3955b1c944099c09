"""Jobs across real processes: kill -9, SIGTERM, the election, schedules with several processes.

Each test runs real ``monolith worker`` / ``monolith serve`` processes in their own data dir
(on SQLite, or the scale-out test profile's PostgreSQL database), with the test jobs of
:mod:`tests.jobs_app`, and reads what ran from the runs log the jobs append to and from the
database itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monolith.config import load_settings
from monolith.db import open_database
from tests.server import ServerProcess, base_env, run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def job_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return base_env(
        data_dir,
        MONOLITH_JOBS_MODULES="tests.jobs_app",
        PYTHONPATH=str(ROOT),
        **extra,
    )


def worker(data_dir: Path, env: dict[str, str]) -> ServerProcess:
    return ServerProcess(data_dir, command=("worker",), env=env).start()


def enqueue(env: dict[str, str], *args: str) -> list[int]:
    done = run_cli("jobs", "enqueue", "test.record", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["ids"])


def _run_lines(data_dir: Path) -> list[list[str]]:
    try:
        text = (data_dir / "runs.log").read_text()
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines()]


def runs(data_dir: Path) -> list[tuple[int, int, str]]:
    """(job id, attempt, unique key) of every completed run, in order."""
    return [(int(a), int(b), c) for a, b, c, _ in _run_lines(data_dir)]


def ran_in(data_dir: Path) -> int:
    """The pid of the process that ran the last job."""
    return int(_run_lines(data_dir)[-1][3])


def query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the database of the app in ``data_dir`` (its processes' database)."""
    url = load_settings(job_env(data_dir), dotenv=None).database.url

    async def fetch() -> list[tuple[Any, ...]]:
        db = open_database(url)
        await db.start()
        try:
            return [tuple(row) for row in await db.fetch_all(sql)]
        finally:
            await db.stop()

    return list(asyncio.run(fetch()))


def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def queue_empty(data_dir: Path) -> Callable[[], bool]:
    """Nothing left to run (finished jobs stay in the table for the retention period)."""
    return lambda: (
        query(data_dir, "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")[0][0] == 0
    )


def running(data_dir: Path) -> int:
    return int(query(data_dir, "SELECT COUNT(*) FROM jobs WHERE state = 'running'")[0][0])


def test_kill_9_mid_way_loses_nothing_and_reruns_only_the_jobs_in_flight(data_dir: Path) -> None:
    env = job_env(data_dir, MONOLITH_JOBS_LEASE_SECONDS="2", MONOLITH_JOBS_CONCURRENCY="20")
    ids = enqueue(env, "--count", "1000", "--payload", '{"sleep": 0.05}')
    assert len(set(ids)) == 1000
    first = worker(data_dir, env)
    eventually(lambda: len(runs(data_dir)) >= 300, 60, "300 jobs ran")
    first.kill9()
    first.stop()  # reaps and closes its log; the process is already gone
    in_flight = {row[0] for row in query(data_dir, "SELECT id FROM jobs WHERE state = 'running'")}
    assert in_flight, "the kill should catch jobs in hand"
    assert len(runs(data_dir)) < 1000, "the kill should come mid-way"

    second = worker(data_dir, env)
    try:
        eventually(queue_empty(data_dir), 120, "every job completed")
    finally:
        second.stop()
    counts = Counter(job_id for job_id, _, _ in runs(data_dir))
    assert set(counts) == set(ids)
    assert {job_id for job_id, n in counts.items() if n > 1} <= in_flight


def test_sigterm_lets_the_jobs_in_hand_finish_within_the_grace(data_dir: Path) -> None:
    env = job_env(data_dir, MONOLITH_JOBS_GRACE_SECONDS="10")
    ids = enqueue(env, "--count", "10", "--payload", '{"sleep": 2}')
    proc = worker(data_dir, env)
    eventually(lambda: running(data_dir) == 10, 30, "10 jobs are running")
    proc.send_signal(signal.SIGTERM)
    assert proc.proc is not None
    assert proc.proc.wait(timeout=10 + 5) == 0  # within the grace period (and start-up slack)
    proc.stop()
    assert sorted(job_id for job_id, _, _ in runs(data_dir)) == sorted(ids)
    assert queue_empty(data_dir)()


def test_sigterm_past_the_grace_hands_jobs_back_and_they_run_after_restart(
    data_dir: Path,
) -> None:
    env = job_env(data_dir, MONOLITH_JOBS_GRACE_SECONDS="1")
    ids = enqueue(env, "--count", "10", "--payload", '{"sleep": 4}')
    proc = worker(data_dir, env)
    eventually(lambda: running(data_dir) == 10, 30, "10 jobs are running")
    proc.send_signal(signal.SIGTERM)
    assert proc.proc is not None
    assert proc.proc.wait(timeout=1 + 5) == 0
    proc.stop()
    assert runs(data_dir) == []
    assert query(data_dir, "SELECT state, attempts, COUNT(*) FROM jobs GROUP BY 1, 2") == [
        ("queued", 0, 10)
    ]
    again = worker(data_dir, job_env(data_dir))
    try:
        eventually(queue_empty(data_dir), 60, "the released jobs ran")
    finally:
        again.stop()
    assert sorted(job_id for job_id, _, _ in runs(data_dir)) == sorted(ids)


def _fires(data_dir: Path) -> list[str]:
    return [key for _, _, key in runs(data_dir) if key.startswith("schedule:test.tick:")]


def test_a_schedule_fires_once_per_fire_with_serve_workers_and_a_worker(data_dir: Path) -> None:
    env = job_env(data_dir, TEST_TICK_EVERY="1")
    serve = ServerProcess(data_dir, workers=2, env=env).start()
    standby = ServerProcess(data_dir, command=("worker",), env=env).start()
    try:
        eventually(lambda: len(_fires(data_dir)) >= 1, 30, "the schedule fired")
        time.sleep(20)
    finally:
        standby.stop()
        serve.stop()
    fires = _fires(data_dir)
    counts = Counter(fires)
    assert [key for key, n in counts.items() if n > 1] == []  # one job per fire
    times = sorted(float(key.rsplit(":", 1)[1]) for key in counts)
    assert len(times) >= 20
    assert {round(b - a, 3) for a, b in itertools.pairwise(times)} == {1.0}  # no gap


def test_when_the_leader_dies_another_process_takes_over(data_dir: Path) -> None:
    env = job_env(data_dir, MONOLITH_JOBS_LEASE_SECONDS="2")
    serve = ServerProcess(data_dir, workers=2, env=env).start()
    standby = ServerProcess(data_dir, command=("worker",), env=env).start()
    try:
        enqueue(env)
        eventually(lambda: len(runs(data_dir)) == 1, 30, "the first job ran")
        leader = ran_in(data_dir)
        assert leader in serve.worker_pids() | {standby.proc.pid}  # type: ignore[union-attr]
        os.kill(leader, signal.SIGKILL)
        enqueue(env)
        eventually(lambda: len(runs(data_dir)) == 2, 30, "a new leader ran the second job")
        new_leader = ran_in(data_dir)
        assert new_leader != leader
        os.kill(new_leader, 0)  # alive
    finally:
        standby.stop()
        serve.stop()


def test_the_cli_shows_a_failed_job_and_retry_runs_it_again(data_dir: Path) -> None:
    env = job_env(data_dir)
    failing = run_cli(
        "jobs", "enqueue", "ops.ping", "--payload", '{"seconds": "not a number"}', env=env
    )
    assert failing.returncode == 0, failing.stderr
    proc = worker(data_dir, env)
    try:

        def failed() -> list[dict[str, Any]]:
            out = run_cli("jobs", "list", "--state", "failed", "--json", env=env)
            return list(json.loads(out.stdout))

        eventually(lambda: bool(failed()), 30, "the job failed")
        [job] = failed()
        assert "ValueError" in job["last_error"]
        human = run_cli("jobs", "list", "--state", "failed", env=env)
        assert "ValueError" in human.stdout
        retried = run_cli("jobs", "retry", str(job["id"]), env=env)
        assert retried.returncode == 0, retried.stderr
        eventually(lambda: failed() and failed()[0]["updated_at"] > job["updated_at"], 30, "rerun")
        discarded = run_cli("jobs", "discard", str(job["id"]), env=env)
        assert discarded.returncode == 0
        missing = run_cli("jobs", "discard", str(job["id"]), env=env)
        assert missing.returncode == 1
        assert f"job {job['id']} not found" in missing.stderr
    finally:
        proc.stop()


def test_serve_with_run_jobs_no_leaves_jobs_to_the_worker(data_dir: Path) -> None:
    env = job_env(data_dir, MONOLITH_RUN_JOBS="no")
    with ServerProcess(data_dir, workers=1, env=env):
        enqueue(env)
        time.sleep(2)  # several poll intervals: a runner would have run it
        assert runs(data_dir) == []
        proc = worker(data_dir, env)
        try:
            eventually(lambda: len(runs(data_dir)) == 1, 30, "the worker ran it")
        finally:
            proc.stop()


def test_worker_help_and_unknown_job_fail_cleanly(data_dir: Path) -> None:
    env = job_env(data_dir)
    assert run_cli("worker", "--help", env=env).returncode == 0
    bad = run_cli("jobs", "enqueue", "no.such.job", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "monolith jobs: no job named 'no.such.job' is registered"
    assert "Traceback" not in bad.stderr
