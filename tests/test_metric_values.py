"""Multi-process metric values (monolith.observability.values): prometheus_client's files,
written without a getpid() per increment, and a forked child counting in files of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector

from monolith.observability.metrics import MULTIPROC_ENV, Metrics, enable_multiprocess


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Path]:
    saved_env, saved_class = os.environ.get(MULTIPROC_ENV), values.ValueClass
    where = tmp_path / "metrics"
    enable_multiprocess(where)
    try:
        yield where
    finally:
        values.ValueClass.close_all()  # type: ignore[attr-defined]
        values.ValueClass = saved_class
        if saved_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved_env


def collected(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_a_forked_child_counts_in_its_own_file_and_the_sums_hold(directory: Path) -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_request("/api/products/{product_id}", "GET", 200, 0.002)
    child = os.fork()
    if child == 0:  # the child: two requests of its own, then gone without cleanup
        try:
            for _ in range(2):
                metrics.observe_request("/api/products/{product_id}", "GET", 200, 0.2)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (directory / f"counter_{os.getpid()}.db").exists()
    assert (directory / f"counter_{child}.db").exists()
    samples = collected(directory)
    route = (("method", "GET"), ("route", "/api/products/{product_id}"))
    assert samples[("monolith_http_requests_total", (*route, ("status", "200")))] == 5
    fast = ("monolith_http_request_duration_seconds_bucket", (("le", "0.0025"), *route))
    assert samples[fast] == 3  # the parent's, not counted again by the child
    assert samples[("monolith_http_request_duration_seconds_count", route)] == 5
    # The parent goes on counting in its own file after the fork.
    metrics.observe_request("/api/products/{product_id}", "GET", 200, 0.002)
    assert collected(directory)[fast] == 4
