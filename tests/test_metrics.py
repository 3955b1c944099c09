"""``/metrics`` on a real ``monolith serve --workers 2``: one answer for every worker.

Requests land on both workers (each answers with its pid); whichever worker answers the
scrape adds up every worker's files, so the count is exactly what was sent. The alert rules
and the Grafana dashboard only use metrics that this server exports. A worker killed with
``kill -9`` is replaced, counted as a restart, and its live gauges disappear.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import ADMIN_TOKEN, ServerProcess, base_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "monolith.json"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("metrics") / "var"
    data_dir.mkdir()
    env = base_env(data_dir, MONOLITH_JOBS_MODULES="tests.jobs_app")
    with ServerProcess(data_dir, workers=2, env=env) as proc:
        yield proc


def scrape(server: ServerProcess, **kwargs: object) -> str:
    r = httpx.get(f"{server.url}/metrics", timeout=10, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def sample_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition declares (HELP/TYPE), with its type's suffixes."""
    names = set()
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def used_names() -> dict[str, set[str]]:
    """Metric names used by the alert rules and by the dashboard's queries."""
    pattern = re.compile(r"\b(monolith_[a-z0-9_]+)")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {
        "alerts.yml": set(pattern.findall(ALERTS.read_text())),
        "monolith.json": {n for e in exprs for n in pattern.findall(e)},
    }


def test_requests_over_two_workers_are_counted_exactly(server: ServerProcess) -> None:
    before = sample_value(scrape(server), "monolith_http_requests_total", route="/health/live")
    pids: set[str] = set()
    sent = 0
    # A new connection per request: the kernel spreads connections over both workers.
    while sent < 40 or (len(pids) < 2 and sent < 400):
        r = httpx.get(f"{server.url}/health/live", timeout=5)
        assert r.status_code == 200
        pids.add(r.headers["x-worker-pid"])
        sent += 1
    assert len(pids) == 2, "every request landed on one worker"
    text = scrape(server)
    counted = sample_value(text, "monolith_http_requests_total", route="/health/live")
    assert counted - before == sent
    by_status = sample_value(
        text, "monolith_http_requests_total", route="/health/live", method="GET", status="200"
    )
    assert by_status - before == sent
    latency = sample_value(
        text, "monolith_http_request_duration_seconds_count", route="/health/live"
    )
    assert latency - before == sent
    # Both workers' live gauges are there, one series per pid.
    lag_pids = {
        s.labels["pid"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "monolith_process_resident_memory_bytes"
    }
    assert pids <= lag_pids


def test_unknown_paths_share_one_label(server: ServerProcess) -> None:
    for i in range(3):
        assert httpx.get(f"{server.url}/no/such/page/{i}", timeout=5).status_code == 404
    text = scrape(server)
    assert "/no/such/page" not in text
    assert sample_value(text, "monolith_http_requests_total", route="unmatched", status="404") >= 3


def test_metrics_is_for_loopback_scrapers_and_admins(server: ServerProcess) -> None:
    url = f"{server.url}/metrics"
    # Through a proxy (Caddy connects from loopback too, and says who the client is).
    proxied = httpx.get(url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert proxied.status_code == 401
    assert proxied.json()["status_code"] == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 403
    with_token = httpx.get(url, headers={**ADMIN, "X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert with_token.status_code == 200
    assert "monolith_http_requests_total" in with_token.text


def test_cached_reads_count_hits_and_misses_over_both_workers(server: ServerProcess) -> None:
    r = httpx.post(
        f"{server.url}/api/products", json={"name": "Lamp", "price_cents": 100}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    product = r.json()["id"]
    before = scrape(server)
    hits = sample_value(before, "monolith_cache_hits_total", prefix="product")
    misses = sample_value(before, "monolith_cache_misses_total", prefix="product")
    pids: set[str] = set()
    reads = 0
    # A new connection per read: both workers read the one entry the first read stored.
    while reads < 2 or (len(pids) < 2 and reads < 200):
        r = httpx.get(f"{server.url}/api/products/{product}", timeout=5)
        assert r.status_code == 200 and r.json()["name"] == "Lamp"
        pids.add(r.headers["x-worker-pid"])
        reads += 1
    assert len(pids) == 2, "every read landed on one worker"
    text = scrape(server)
    assert sample_value(text, "monolith_cache_misses_total", prefix="product") == misses + 1
    assert sample_value(text, "monolith_cache_hits_total", prefix="product") == hits + reads - 1
    # The size is the shared store's own number where the backend knows it: the disk backend
    # reports its volume; Redis, whose memory other data shares, reports none.
    sizes = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "monolith_cache_size_bytes"
    ]
    if server.env.get("MONOLITH_CACHE_URL", "").startswith("redis://"):
        assert sizes == []
    else:
        assert len(sizes) == 1 and sizes[0] > 0


def wait_for(server: ServerProcess, check: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = scrape(server)
        if check(text):
            return text
        time.sleep(0.2)
    pytest.fail(f"{what} never showed in /metrics:\n{text}")


def test_jobs_are_counted_by_name_and_outcome(server: ServerProcess) -> None:
    for name, count in (("ops.ping", 5), ("test.flaky", 1)):
        r = httpx.post(
            f"{server.url}/api/admin/jobs", json={"name": name, "count": count}, headers=ADMIN
        )
        assert r.status_code == 201, r.text

    def finished(text: str) -> bool:
        # The counters move when a runner decides; the table's states when its grouped
        # completions commit, a moment later: wait for both.
        return (
            sample_value(text, "monolith_jobs_succeeded_total", job="ops.ping") == 5
            and sample_value(text, "monolith_jobs_failed_total", job="test.flaky") == 1
            and sample_value(text, "monolith_jobs_in_state", state="failed") == 1
        )

    text = wait_for(server, finished, "5 pings done and one flaky job failed")
    assert sample_value(text, "monolith_jobs_enqueued_total", job="ops.ping") == 5
    assert sample_value(text, "monolith_jobs_retried_total", job="test.flaky") == 1
    assert sample_value(text, "monolith_job_duration_seconds_count", job="ops.ping") == 5
    assert sample_value(text, "monolith_jobs_in_state", state="failed") == 1
    assert sample_value(text, "monolith_jobs_queue_depth", queue="default") == 0
    assert 'monolith_jobs_oldest_age_seconds{queue="default"}' in text


def test_alerts_and_dashboard_use_only_exported_metrics(server: ServerProcess) -> None:
    exported = exported_names(scrape(server))
    for source, names in used_names().items():
        assert names, f"{source}: no monolith_ metric found (the pattern is wrong)"
        missing = sorted(names - exported)
        assert not missing, f"{source} uses metrics the server does not export: {missing}"


def test_a_killed_worker_is_replaced_counted_and_forgotten(server: ServerProcess) -> None:
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if victim not in pids and len(pids) == 2:
            try:
                text = scrape(server)
            except httpx.HTTPError:
                text = ""
            if sample_value(text, "monolith_worker_restarts_total") == 1:
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed worker was not replaced and counted:\n{server.log_text()}")
    server.wait_ready()
    # The new worker counts its start once its lifespan has run, which on a busy machine can
    # come after the other worker already answers: read until it has (or the deadline passes).
    deadline = time.monotonic() + 30
    while True:
        text = scrape(server)
        if sample_value(text, "monolith_worker_starts_total") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    live = {
        s.labels.get("pid")
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "monolith_event_loop_lag_seconds"
    }
    assert str(victim) not in live
    # Counters of the dead worker stay in the totals: nothing it counted is lost.
    assert sample_value(text, "monolith_worker_starts_total") == 3
