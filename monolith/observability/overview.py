"""What the ``/admin`` page shows, in one JSON document: current numbers, the last hour, the
failed jobs, the top statements and the cache.

Current gauges and totals come from the metrics of every process (as ``/metrics`` sees
them); rates come from the last interval of the shared history, so every worker answers the
same. This module reads; it never changes anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

from monolith.observability.component import Observability

FAILED_JOBS_SHOWN = 50


def _samples(families: dict[str, Metric], name: str) -> list[tuple[dict[str, str], float]]:
    family = families.get(name)
    if family is None:
        return []
    wanted = {name, f"{name}_total"}
    return [(s.labels, s.value) for s in family.samples if s.name in wanted]


def _sum(families: dict[str, Metric], name: str) -> float:
    return sum(v for _, v in _samples(families, name))


def current(metrics: Iterable[Metric]) -> dict[str, Any]:
    """Totals and gauges right now, over every process."""
    families = {m.name: m for m in metrics}
    memory = _samples(families, "monolith_process_resident_memory_bytes")
    lag = [v for _, v in _samples(families, "monolith_event_loop_lag_seconds")]
    errors = sum(
        v
        for labels, v in _samples(families, "monolith_http_requests")
        if labels["status"].startswith("5")
    )
    hits = _sum(families, "monolith_cache_hits")
    misses = _sum(families, "monolith_cache_misses")
    started = _sum(families, "monolith_serve_start_time_seconds")
    return {
        "requests_total": _sum(families, "monolith_http_requests"),
        "errors_total": errors,
        "jobs_succeeded_total": _sum(families, "monolith_jobs_succeeded"),
        "jobs_failed_total": _sum(families, "monolith_jobs_failed"),
        "jobs_retried_total": _sum(families, "monolith_jobs_retried"),
        "queue_depth": {
            labels["queue"]: v for labels, v in _samples(families, "monolith_jobs_queue_depth")
        },
        "oldest_job_age_seconds": max(
            (v for _, v in _samples(families, "monolith_jobs_oldest_age_seconds")), default=0.0
        ),
        "jobs_by_state": {
            labels["state"]: v for labels, v in _samples(families, "monolith_jobs_in_state")
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "hit_ratio": hits / (hits + misses) if hits + misses else None,
            "evictions": _sum(families, "monolith_cache_evictions"),
            "size_bytes": _sum(families, "monolith_cache_size_bytes"),
            "entries": _sum(families, "monolith_cache_entries"),
        },
        "rate_limit_fallbacks_total": _sum(families, "monolith_ratelimit_fallbacks"),
        "processes": len(memory),
        "memory_bytes": sum(v for _, v in memory),
        "worker_restarts": _sum(families, "monolith_worker_restarts"),
        "loop_lag_seconds": max(lag, default=0.0),
        "loop_blocks_total": _sum(families, "monolith_event_loop_blocks"),
        "db_statements_total": _sum(families, "monolith_db_statements"),
        "db_slow_total": _sum(families, "monolith_db_slow_statements"),
        "uptime_seconds": time.time() - started if started else None,
    }


def _last(series: dict[str, list[Any]], key: str) -> Any:
    """The newest sample that has a value: what the chart's last point shows (an interval
    without requests has no p95, and the page must not show "-" next to a chart with one)."""
    values = series.get(key) or []
    return next((v for v in reversed(values) if v is not None), None)


def _last_at(series: dict[str, list[Any]], key: str) -> float | None:
    """When :func:`_last`'s sample was taken."""
    values, times = series.get(key) or [], series.get("t") or []
    return next(
        (t for t, v in zip(reversed(times), reversed(values), strict=False) if v is not None),
        None,
    )


async def overview(obs: Observability, jobs: Any) -> dict[str, Any]:
    extra = await obs.scrape_families()
    families = await asyncio.to_thread(obs.metrics.families, extra)
    history = await obs.last_hour()
    failed = await jobs.queue.list("failed", limit=FAILED_JOBS_SHOWN)
    source, statements = await obs.top_statements(10)
    return {
        "generated_at": time.time(),
        "now": {
            **current(families),
            "request_rate": _last(history, "request_rate"),
            "error_ratio": _last(history, "error_ratio"),
            "p95_seconds": _last(history, "p95_seconds"),
            "p95_at": _last_at(history, "p95_seconds"),
            "job_rate": _last(history, "job_rate"),
            "job_failure_rate": _last(history, "job_failure_rate"),
            "cpu_cores": _last(history, "cpu_cores"),
        },
        "history": history,
        "failed_jobs": [
            {
                "id": j.id,
                "name": j.name,
                "queue": j.queue,
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "error": j.last_error,
                "updated_at": j.updated_at,
            }
            for j in failed
        ],
        "statements": {"source": source, "rows": [s.as_dict() for s in statements]},
        "queues": await jobs.queues(),
    }
