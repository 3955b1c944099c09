"""A handler that blocks the event loop is named in a warning while it blocks, and counted.

The app here is the request middleware and the loop monitor around two handlers, one that
sleeps with ``time.sleep`` (the seed's "worker sitting on a blocking call") and one that
awaits; only the first is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

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


# -- a late beat that is not the loop's doing ------------------------------------------------

#: A process with a monitored loop; it prints "ready <loop thread id>". Lines on stdin:
#: "block" blocks the loop for 0.3 s in ``block_for_real`` and answers "ok"; "quit" prints the
#: warnings and the largest lag seen, as JSON, and exits.
_SCRIPT = r"""
import asyncio, json, sys, threading, time
from structlog.testing import capture_logs
from monolith.observability.loopmon import LoopMonitor

def block_for_real():
    time.sleep(0.3)

async def main():
    lags = []
    monitor = LoopMonitor(block_after=0.1, window=0.2, on_lag=lags.append)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def command():
        line = sys.stdin.readline().strip()
        if line == "block":
            block_for_real()
            print("ok", flush=True)
        else:
            done.set_result(None)

    with capture_logs() as logs:
        await monitor.start()
        loop.add_reader(sys.stdin.fileno(), command)
        print("ready", threading.get_native_id(), flush=True)
        await done
        await monitor.stop()
    warnings = [e for e in logs if e["event"] == "event loop blocked"]
    print(json.dumps({"warnings": warnings, "max_lag": max(lags, default=0.0)}), flush=True)

asyncio.run(main())
"""


class _Monitored:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, loop_thread = self.say(None).split()
        assert ready == "ready"
        self.loop_thread = int(loop_thread)

    def say(self, line: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def finish(self) -> dict[str, Any]:
        """Blocks the loop for real (the control: a real block is still named), then quits."""
        assert self.say("block") == "ok"
        result: dict[str, Any] = json.loads(self.say("quit"))
        assert self.proc.wait(timeout=30) == 0
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()  # waits, and closes the pipes


def _pass(seconds: float) -> None:
    """Let time pass (the monitored process's watchdog ticks every 50 ms meanwhile)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.02)


def _only_the_real_block(result: dict[str, Any]) -> None:
    assert result["max_lag"] >= 0.25, result  # the loop did fall behind
    [warning] = result["warnings"]
    assert "in block_for_real" in warning["where"], result


def test_a_stopped_process_is_not_a_blocked_loop() -> None:
    """A debugger, a paused VM, a host that gives the VM no CPU: no thread of the process
    runs, and whichever thread wakes first after is a race; no warning either way."""
    monitored = _Monitored()
    try:
        for _ in range(5):
            os.kill(monitored.proc.pid, signal.SIGSTOP)
            _pass(0.3)
            os.kill(monitored.proc.pid, signal.SIGCONT)
            _pass(0.1)
        result = monitored.finish()
    finally:
        monitored.kill()
    _only_the_real_block(result)


def test_a_loop_waiting_for_a_cpu_is_not_a_blocked_loop() -> None:
    """A busy box: the loop thread is runnable but gets no CPU for 0.5 s (a real-time busy
    process on its CPU), while its watchdog runs on another CPU. Lag, but no one to blame."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.fail("needs two CPUs: the loop thread's, and another for its watchdog")
    loop_cpu, other_cpu = cpus[0], cpus[1]
    monitored = _Monitored()
    burner = None
    try:
        for task in os.listdir(f"/proc/{monitored.proc.pid}/task"):
            tid = int(task)
            os.sched_setaffinity(tid, {loop_cpu} if tid == monitored.loop_thread else {other_cpu})
        burner = subprocess.Popen(  # stops by itself, whatever happens to this test
            [
                sys.executable,
                "-c",
                f"import os, time\nos.sched_setaffinity(0, {{{loop_cpu}}})\n"
                "os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))\n"
                "end = time.monotonic() + 0.5\nwhile time.monotonic() < end: pass\n",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = burner.communicate(timeout=60)
        assert burner.returncode == 0, f"a real-time process needs CAP_SYS_NICE (root): {err}"
        _pass(0.2)
        result = monitored.finish()
    finally:
        if burner is not None and burner.poll() is None:
            burner.kill()
            burner.communicate()
        monitored.kill()
    _only_the_real_block(result)
