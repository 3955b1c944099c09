"""Reaching the machine's PostgreSQL and Redis (and Caddy, Chromium) from tests.

A suite that needs a service runs when it is reachable and is skipped with a printed reason
otherwise; under ``CI=true`` a missing service is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid

import pytest

PG_ADMIN_URL = os.environ.get(
    "MONOLITH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MONOLITH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(what: str, ok: bool, how: str) -> None:
    """Skip (or fail under CI) when ``what`` is not available."""
    if ok:
        return
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is an error)")
    pytest.skip(message)


def require_postgres() -> None:
    require("PostgreSQL", _reachable("127.0.0.1", 5432), "start it on 127.0.0.1:5432")


def require_redis() -> None:
    require("Redis", _reachable("127.0.0.1", 6379), "start it on 127.0.0.1:6379")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    require(name, path is not None, f"apt-get install {package}")
    assert path is not None
    return path


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
