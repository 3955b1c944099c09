"""A plain Litestar app with no monolith wiring: only the store, for Litestar's own features.

Litestar's server-side sessions (store ``sessions``) and response cache (store
``response_cache``) take their stores from a registry whose default factory is a monolith store's
``with_namespace``, as Litestar's docs do with a root ``RedisStore``. Nothing starts the store:
Litestar enters only the stores it is handed by name, so it starts itself on first use.

``tests/test_plain_litestar.py`` serves it with granian and two workers; the store's URL comes
from ``PLAIN_APP_STORE_URL``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.config.response_cache import ResponseCacheConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.registry import StoreRegistry

from monolith.store import open_store

root = open_store(os.environ["PLAIN_APP_STORE_URL"])


@get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@post("/session")
async def write_session(request: Request[Any, Any, Any], data: dict[str, str]) -> dict[str, int]:
    request.set_session(data)
    return {"pid": os.getpid()}


@get("/session")
async def read_session(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "session": request.session}


@get("/cached", cache=300)
async def cached() -> dict[str, Any]:
    return {"pid": os.getpid(), "made": secrets.token_hex(8)}


app = Litestar(
    route_handlers=[pid, write_session, read_session, cached],
    middleware=[ServerSideSessionConfig().middleware],
    stores=StoreRegistry(default_factory=root.with_namespace),
    response_cache_config=ResponseCacheConfig(default_expiration=300),
)
