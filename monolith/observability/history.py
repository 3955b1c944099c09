"""The last hour for the ``/admin`` plots: a small ring of samples in the shared stats file.

Every ``SAMPLE_SECONDS`` each process offers a sample for the current time slot; the first to
write the slot wins (``INSERT OR IGNORE``), so all workers serve the same history. A sample
holds cumulative totals taken from the metrics added up over every process (requests, 5xx,
latency buckets, jobs, cache) plus gauges (queue depth); rates and p95 are computed when read,
from consecutive samples, the way Prometheus computes ``rate`` and ``histogram_quantile``. A
counter that went down means the server restarted (the metrics directory is wiped): the new
value is then the increase.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

SAMPLE_SECONDS = 15
KEEP_SAMPLES = 2 * 3600 // SAMPLE_SECONDS

Sample = dict[str, Any]


def _total(families: Mapping[str, Metric], name: str, sample: str, **match: str) -> float:
    family = families.get(name)
    if family is None:
        return 0.0
    return sum(
        s.value
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in match.items())
    )


def snapshot(metrics: Iterable[Metric]) -> Sample:
    """Cumulative totals and current gauges from metric families (all processes)."""
    families = {m.name: m for m in metrics}
    requests = families.get("monolith_http_requests")
    errors = 0.0
    if requests is not None:
        errors = sum(
            s.value
            for s in requests.samples
            if s.name.endswith("_total") and s.labels.get("status", "").startswith("5")
        )
    buckets: dict[str, float] = {}
    latency = families.get("monolith_http_request_duration_seconds")
    if latency is not None:
        for s in latency.samples:
            if s.name.endswith("_bucket"):
                buckets[s.labels["le"]] = buckets.get(s.labels["le"], 0.0) + s.value
    return {
        "requests": _total(families, "monolith_http_requests", "monolith_http_requests_total"),
        "errors": errors,
        "buckets": buckets,
        "jobs_succeeded": _total(
            families, "monolith_jobs_succeeded", "monolith_jobs_succeeded_total"
        ),
        "jobs_failed": _total(families, "monolith_jobs_failed", "monolith_jobs_failed_total"),
        "queue_depth": _total(families, "monolith_jobs_queue_depth", "monolith_jobs_queue_depth"),
        "cache_hits": _total(families, "monolith_cache_hits", "monolith_cache_hits_total"),
        "cache_misses": _total(families, "monolith_cache_misses", "monolith_cache_misses_total"),
        "cpu_seconds": _total(
            families, "monolith_process_cpu_seconds", "monolith_process_cpu_seconds_total"
        ),
    }


def _increase(new: float, old: float) -> float:
    return new if new < old else new - old  # a drop is a restart: count from zero


def quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """``histogram_quantile`` over cumulative bucket counts keyed by ``le``; None if empty."""
    bounds = sorted((math.inf if le == "+Inf" else float(le), n) for le, n in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def series(samples: list[tuple[float, Sample]]) -> dict[str, list[Any]]:
    """Per-interval values between consecutive samples, for the plots."""
    out: dict[str, list[Any]] = {
        "t": [],
        "request_rate": [],
        "error_ratio": [],
        "p95_seconds": [],
        "job_rate": [],
        "job_failure_rate": [],
        "queue_depth": [],
        "cache_hit_ratio": [],
        "cpu_cores": [],
    }
    for (t0, a), (t1, b) in itertools.pairwise(samples):
        dt = max(t1 - t0, 1e-9)
        requests = _increase(b["requests"], a["requests"])
        errors = _increase(b["errors"], a["errors"])
        buckets = {le: _increase(n, a["buckets"].get(le, 0.0)) for le, n in b["buckets"].items()}
        done = _increase(b["jobs_succeeded"], a["jobs_succeeded"])
        failed = _increase(b["jobs_failed"], a["jobs_failed"])
        hits = _increase(b["cache_hits"], a["cache_hits"])
        misses = _increase(b["cache_misses"], a["cache_misses"])
        p95 = quantile(0.95, buckets)
        out["t"].append(round(t1, 3))
        out["request_rate"].append(round(requests / dt, 3))
        out["error_ratio"].append(round(errors / requests, 5) if requests else 0.0)
        out["p95_seconds"].append(None if p95 is None else round(p95, 5))
        out["job_rate"].append(round((done + failed) / dt, 3))
        out["job_failure_rate"].append(round(failed / dt, 3))
        out["queue_depth"].append(b["queue_depth"])
        out["cache_hit_ratio"].append(round(hits / (hits + misses), 4) if hits + misses else None)
        cpu = _increase(b.get("cpu_seconds", 0.0), a.get("cpu_seconds", 0.0))
        out["cpu_cores"].append(round(cpu / dt, 3))
    return out
