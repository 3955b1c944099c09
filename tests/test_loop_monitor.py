"""A handler that blocks the event loop is named in a warning while it blocks, and counted.

The app here is the request middleware and the loop monitor around two handlers, one that
sleeps with ``time.sleep`` (the seed's "worker sitting on a blocking call") and one that
awaits; only the first is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from litestar import Litestar, get
from litestar.params import Parameter
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from monolith.observability.loopmon import LoopMonitor
from monolith.observability.metrics import Metrics
from monolith.web.middleware import RequestContextMiddleware

pytestmark = pytest.mark.profile_independent


@get("/blocking/{n:int}")
async def blocking(n: Annotated[int, Parameter()]) -> dict[str, int]:
    time.sleep(0.3)  # blocking the loop is the point of the test
    return {"n": n}


@get("/polite")
async def polite() -> dict[str, str]:
    await asyncio.sleep(0.3)
    return {"ok": "yes"}


@pytest.fixture
async def monitored() -> AsyncIterator[tuple[AsyncTestClient[Litestar], LoopMonitor, Metrics]]:
    metrics = Metrics()
    lags: list[float] = []
    monitor = LoopMonitor(
        block_after=0.1,
        window=0.2,
        on_lag=lags.append,
        on_block=lambda route: metrics.loop_blocks.labels(route).inc(),
    )
    monitor.lags = lags  # type: ignore[attr-defined]
    # Started by the app's lifespan, as the real app does: Litestar's test client runs the app
    # on a loop of its own, in another thread.
    app = Litestar(
        route_handlers=[blocking, polite],
        on_startup=[monitor.start],
        on_shutdown=[monitor.stop],
        logging_config=None,
    )
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler, metrics=metrics, monitor=monitor)
    async with AsyncTestClient(app=app) as client:
        yield client, monitor, metrics


def _blocks(metrics: Metrics, route: str) -> float:
    value = metrics.registry.get_sample_value("monolith_event_loop_blocks_total", {"route": route})
    return value or 0.0


async def test_a_blocking_handler_is_named(
    monitored: tuple[AsyncTestClient[Litestar], LoopMonitor, Metrics],
) -> None:
    client, monitor, metrics = monitored
    with capture_logs() as logs:
        assert (await client.get("/polite")).status_code == 200
        assert (await client.get("/blocking/7")).status_code == 200
        await asyncio.sleep(0.3)  # let the ticker see the lag
    warnings = [e for e in logs if e["event"] == "event loop blocked"]
    # (A loaded machine may add a stall outside any request; none may name /polite.)
    assert not [w for w in warnings if w["route"] == "/polite"], warnings
    [warning] = [w for w in warnings if w["route"] is not None]
    assert warning["log_level"] == "warning"
    assert warning["route"] == "/blocking/{n}"
    assert "test_loop_monitor.py" in warning["where"] and "in blocking" in warning["where"]
    assert warning["blocked_ms"] >= 100
    assert _blocks(metrics, "/blocking/{n}") == 1
    assert _blocks(metrics, "/polite") == 0
    assert max(monitor.lags) >= 0.25  # the lag gauge's windows saw the 0.3 s block
    assert not monitor.requests, "finished requests are forgotten"
