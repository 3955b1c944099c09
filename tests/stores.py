"""Fixtures for suites that run over every store backend, and helpers for multi-process tests."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monolith.store import Store, open_store

BACKENDS = ["memory", "disk", pytest.param("redis", marks=pytest.mark.redis)]
SHARED_BACKENDS = ["disk", pytest.param("redis", marks=pytest.mark.redis)]
#: Backends whose clock is this process's (a test that travels in time moves their expiry).
LOCAL_BACKENDS = ["memory", "disk"]


@dataclass(frozen=True)
class StoreSpec:
    """How to open the same store again, in this process or another."""

    url: str
    namespace: str

    def open(self, **options: Any) -> Store:
        return open_store(self.url, namespace=self.namespace, **options)


def _spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "memory":
        return StoreSpec("memory://", "monolith")
    if request.param == "disk":
        return StoreSpec(f"disk://{tmp_path / 'cache'}", "monolith")
    prefix: str = request.getfixturevalue("redis_prefix")
    return StoreSpec(request.getfixturevalue("redis_url"), prefix.rstrip(":") + ":store")


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    return _spec(request, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Backends shared by processes (memory is per process by design)."""
    return _spec(request, tmp_path)


@pytest.fixture(params=LOCAL_BACKENDS)
def local_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Backends that keep time with this process's wall clock (Redis keeps its own)."""
    return _spec(request, tmp_path)


@pytest.fixture
async def store(store_spec: StoreSpec) -> AsyncIterator[Store]:
    opened = store_spec.open()
    await opened.start()
    try:
        yield opened
    finally:
        await opened.delete_all()
        await opened.stop()


def in_processes(count: int, fn: Callable[..., Awaitable[Any]], *args: Any) -> list[Any]:
    """Run ``asyncio.run(fn(index, *args))`` in ``count`` fresh processes at once; their results."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(count, mp_context=context) as pool:
        futures = [pool.submit(_run, fn, index, *args) for index in range(count)]
        return [f.result(timeout=120) for f in futures]


def _run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(fn(*args))
