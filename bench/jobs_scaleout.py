"""Jobs across runner processes: throughput with 1, 2 and 4 runners, and pickup latency.

    python -m bench.jobs_scaleout [--smoke] [--json]

- Throughput on PostgreSQL: N ``monolith worker`` processes (every one a runner), then jobs
  enqueued in transactions of 1,000 and timed from the first enqueue until all are recorded
  ``done``. Two kinds: no-op jobs (``bench.noop``, per-process concurrency 100: the queue's own
  cost) and jobs that wait 20 ms on I/O (``bench.io``, per-process concurrency 10: a process's
  job slots are the limit, as with jobs that call a remote service). Target: I/O-bound jobs/s
  with 2 runners >= 1.8x one.
- The same on SQLite, to decide whether more than one runner pays there (one writer takes
  every claim and every completion).
- Pickup latency, SQLite and PostgreSQL, idle queue, one runner: one job at a time, from the
  enqueue call (its insert and commit included) to the job's first line running, each after
  the previous one started and a pause. Target: p99 <= 20 ms on both.

Writes ``bench/results/jobs_scaleout.json`` (or ``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from monolith.config import load_settings
from monolith.services import build_services

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("MONOLITH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def say(message: str) -> None:
    print(f"jobs_scaleout: {message}", file=sys.stderr, flush=True)


def _env(data_dir: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONOLITH_")}
    env.update(
        MONOLITH_ENV="production",
        MONOLITH_DATA_DIR=str(data_dir),
        MONOLITH_DATABASE_URL=url,
        MONOLITH_SECRET_KEY="bench-secret-key-" + "x" * 32,
        MONOLITH_JOBS_MODULES="bench.jobs_app",
        MONOLITH_LOG_LEVEL="warning",
        MONOLITH_LOG_FORMAT="json",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Deployment:
    """A data dir and database with N runner processes (``monolith worker``)."""

    def __init__(self, root: Path, dialect: str, **settings: str) -> None:
        self.root = root
        self.data_dir = root / "var"
        self.data_dir.mkdir(parents=True)
        self.dialect = dialect
        self.db_name = f"monolith_bench_jobs_{os.getpid()}_{random.getrandbits(32):08x}"
        if dialect == "postgresql":
            self.url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.db_name}"
        else:
            self.url = f"sqlite:///{self.data_dir / 'monolith.db'}"
        self.env = _env(self.data_dir, self.url, **settings)
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Deployment:
        if self.dialect == "postgresql":
            asyncio.run(_pg(f'CREATE DATABASE "{self.db_name}"'))
        done = subprocess.run(
            [sys.executable, "-m", "monolith", "migrate"], env=self.env, capture_output=True
        )
        if done.returncode != 0:
            raise SystemExit(f"migrate failed: {done.stderr.decode()}")
        return self

    def start(self, runners: int) -> None:
        log = (self.root / "workers.log").open("ab")
        for _ in range(runners):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "monolith", "worker"],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.dialect == "postgresql":
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))


async def _services(dep: Deployment) -> Any:
    settings = load_settings(dep.env, dotenv=None)
    svc = build_services(settings)  # enqueues and reads only; never runs jobs
    await svc.start()
    return svc


async def _wait_runners(svc: Any, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = await svc.db.fetch_val("SELECT COUNT(*) FROM job_runners")
        if running >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {running} of {count} runners started")
        await asyncio.sleep(0.1)


async def _throughput(dep: Deployment, name: str, count: int, runners: int) -> float:
    svc = await _services(dep)
    try:
        await _wait_runners(svc, runners)
        await asyncio.sleep(1.0)  # every runner is past its start and listening
        started = time.perf_counter()
        for offset in range(0, count, 1000):
            await svc.jobs.enqueue_many(name, [None] * min(1000, count - offset))
        pending = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
        while await svc.db.fetch_val(pending):
            if time.perf_counter() - started > 600:
                raise SystemExit("jobs still pending after 600 s")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        failed = await svc.db.fetch_val("SELECT COUNT(*) FROM jobs WHERE state <> 'done'")
        if failed:
            raise SystemExit(f"{failed} jobs did not succeed")
        return count / elapsed
    finally:
        await svc.stop()


def throughput(dialect: str, name: str, count: int, runners: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="monolith-bench-jobs-") as tmp:
        settings = {"MONOLITH_JOBS_CONCURRENCY": str(concurrency)}
        with Deployment(Path(tmp), dialect, **settings) as dep:
            dep.start(runners)
            return asyncio.run(_throughput(dep, name, count, runners))


async def _pickup(dep: Deployment, samples: int) -> list[float]:
    svc = await _services(dep)
    stamps = dep.data_dir / "stamps.log"
    try:
        await _wait_runners(svc, 1)
        await asyncio.sleep(1.0)
        latencies: list[float] = []
        for _ in range(samples + 5):
            before = time.time()
            job_id = await svc.jobs.enqueue("bench.stamp")
            deadline = time.monotonic() + 10
            while True:
                text = stamps.read_text() if stamps.exists() else ""
                line = [ln for ln in text.splitlines() if ln.split()[0] == str(job_id)]
                if line:
                    latencies.append(float(line[0].split()[1]) - before)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} did not start within 10 s")
                await asyncio.sleep(0.001)
            await asyncio.sleep(random.uniform(0.02, 0.05))  # idle again
        return latencies[5:]  # the first few warm the connections up
    finally:
        await svc.stop()


def pickup(dialect: str, samples: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="monolith-bench-jobs-") as tmp,
        Deployment(Path(tmp), dialect) as dep,
    ):
        dep.start(1)
        lat = sorted(asyncio.run(_pickup(dep, samples)))
    return {
        "samples": len(lat),
        "p50_ms": round(statistics.median(lat) * 1000, 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
        "max_ms": round(lat[-1] * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="small counts; checks it runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-sqlite-runners", action="store_true")
    args = parser.parse_args(argv)
    noop_n, io_n, samples = (600, 300, 20) if args.smoke else (20_000, 4_000, 300)
    runner_counts = (1, 2) if args.smoke else (1, 2, 4)
    result: dict[str, Any] = {"bench": "jobs_scaleout", "smoke": args.smoke, "throughput": {}}
    for dialect in ("postgresql", "sqlite"):
        if dialect == "sqlite" and args.skip_sqlite_runners:
            continue
        for kind, name, count, concurrency in (
            ("noop", "bench.noop", noop_n, 100),
            ("io_20ms", "bench.io", io_n, 10),
        ):
            for runners in runner_counts:
                say(f"{dialect} {kind} with {runners} runner(s)")
                rate = throughput(dialect, name, count, runners, concurrency)
                result["throughput"][f"{dialect}/{kind}/{runners}"] = round(rate)
    for dialect in ("sqlite", "postgresql"):
        say(f"{dialect} pickup latency")
        result[f"pickup_{dialect}"] = pickup(dialect, samples)
    t = result["throughput"]
    result["pg_io_2_vs_1"] = round(t["postgresql/io_20ms/2"] / t["postgresql/io_20ms/1"], 2)
    result["meets_targets"] = {
        "pg_io_2_runners_at_least_1.8x": result["pg_io_2_vs_1"] >= 1.8,
        "pickup_p99_at_most_20ms": all(
            result[f"pickup_{d}"]["p99_ms"] <= 20 for d in ("sqlite", "postgresql")
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("jobs_scaleout_smoke.json" if args.smoke else "jobs_scaleout.json")).write_text(
        json.dumps(result, indent=2) + "\n"
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print("| jobs/s | 1 runner | 2 runners | 4 runners |")
    print("|---|---|---|---|")
    for dialect in ("postgresql", "sqlite"):
        for kind in ("noop", "io_20ms"):
            cells = [str(t.get(f"{dialect}/{kind}/{n}", "-")) for n in (1, 2, 4)]
            if cells[0] != "-":
                print(f"| {dialect} {kind} | {' | '.join(cells)} |")
    for d in ("sqlite", "postgresql"):
        p = result[f"pickup_{d}"]
        print(f"pickup {d}: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms ({p['samples']} samples)")
    print(f"PostgreSQL I/O-bound, 2 runners vs 1: {result['pg_io_2_vs_1']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
