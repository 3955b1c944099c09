"""The benchmark harness keeps working: every case runs on every system with zero errors.

Speed is not asserted here (it lives in ``make bench`` and docs/BENCHMARKS.md); this runs
``python -m bench.run --smoke`` (about a second per case) against real servers, the machine's
PostgreSQL and Redis, and wrk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import require_binary, require_postgres, require_redis

ROOT = Path(__file__).resolve().parent.parent

# The harness sets up every system it measures itself (no test profile applies to it).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.profile_independent,
]


@pytest.fixture(scope="module")
def smoke(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    require_postgres()
    require_redis()
    require_binary("wrk", "wrk")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    return proc, out


def test_smoke_bench_exits_cleanly_and_writes_json_png_and_table(
    smoke: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = smoke
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "smoke.png").read_bytes().startswith(b"\x89PNG")
    assert "| catalog (req/s) |" in proc.stdout
    assert "monolith / seed" in proc.stdout


def test_every_case_ran_on_the_peers_with_zero_errors(
    smoke: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = smoke
    doc = json.loads((out / "smoke.json").read_text())
    runs = doc["runs"]
    for system in ("ceiling", "hello", "seed"):
        cases = {e["case"] for e in doc["summary"] if system in e["systems"]}
        measured = {r["case"] for r in runs if r["system"] == system and "na" not in r}
        assert measured == cases, (system, [r for r in runs if r["system"] == system])
    measured_runs = [r for r in runs if "na" not in r]
    assert measured_runs
    assert all(r["errors"] == 0 for r in measured_runs)
    for r in measured_runs:
        rate = r["jobs_per_s"] if "jobs_per_s" in r else r["max"]["rps"]
        assert rate > 0, r


def test_monolith_is_measured_and_missing_parts_say_why(
    smoke: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = smoke
    doc = json.loads((out / "smoke.json").read_text())
    mono = {r["case"]: r for r in doc["runs"] if r["system"] == "monolith"}
    # `monolith serve` and the catalog exist: those cases must have been measured.
    for case in ("catalog", "write", "write_full"):
        assert "na" not in mono[case], mono[case]
    # A case whose monolith side is not there yet is skipped with a reason, never a failure.
    for run in mono.values():
        assert "na" not in run or (run["na"] and not run.get("failed")), run


def test_the_job_scale_out_bench_runs_every_measurement(tmp_path: Path) -> None:
    require_postgres()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.jobs_scaleout", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((tmp_path / "jobs_scaleout_smoke.json").read_text())
    assert set(doc["throughput"]) == {
        f"{db}/{kind}/{n}"
        for db in ("postgresql", "sqlite")
        for kind in ("noop", "io_20ms")
        for n in (1, 2)
    }
    assert all(rate > 0 for rate in doc["throughput"].values())
    for db in ("sqlite", "postgresql"):
        assert doc[f"pickup_{db}"]["samples"] == 20
    assert "2 runners vs 1" in proc.stdout
