"""``create_app(settings)``: wiring only. Builds services, routes and middleware; connects to
nothing until the lifespan starts (which happens in every granian worker)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.stores.registry import StoreRegistry
from litestar.types import ControllerRouterHandler

from monolith import __version__, features
from monolith.config import Settings
from monolith.logs import flush_access_log, get_logger
from monolith.server import install_drain_handler
from monolith.services import Services, build_services
from monolith.web import admin_jobs, admin_page, events, health, media, metrics
from monolith.web.errors import HANDLERS
from monolith.web.fastpath import FastPath
from monolith.web.middleware import RequestContextMiddleware
from monolith.web.ratelimit import RateLimitMiddleware
from monolith.web.standby import standby_middleware

#: Largest JSON body accepted (uploads set their own, larger limit on their route).
MAX_BODY = 1024 * 1024

log = get_logger("monolith.app")


def create_app(
    settings: Settings, services: Services | None = None, *, worker: bool = False
) -> Litestar:
    """The app. ``worker``: this process is a server worker that lives as long as the app (the
    objects made at start-up are then frozen out of the garbage collector's reach, below)."""
    # A standby runs no jobs: they write, and its copy is the primary's to change.
    run_jobs = settings.server.run_jobs == "auto" and not settings.replication.standby
    svc = services or build_services(settings, run_jobs=run_jobs)
    # This process serves HTTP: it sees the HTTP numbers, and its loop must stay responsive.
    svc.observability.sampling = svc.observability.watch_loop = True

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        install_drain_handler(svc.events.close_listeners, context.close_connections)
        svc.observability.monitor.armed = False  # until started: start-up is not lag
        try:
            await svc.start()
        except BaseException:
            await svc.stop()
            raise
        if worker:
            # Everything made so far (modules, routes, services) lives as long as the worker.
            # Frozen, a full collection under load scans only what came after: measured under
            # the mix, gen-2 collections of ~78,000 start-up objects stalled the loop 35-55 ms
            # each, and every request in flight with it. Before arming the lag monitor: this
            # one collection is start-up, not lag.
            gc.collect()
            gc.freeze()
        svc.observability.monitor.arm()
        svc.metrics.worker_starts.inc()
        log.info("worker started", database=svc.db.describe(), standby=svc.standby is not None)
        try:
            yield
        finally:
            await svc.stop()
            log.info("worker stopped")  # after the access lines still pending
            flush_access_log()

    handlers: list[ControllerRouterHandler] = [
        *health.routes(svc),
        *features.routes(svc),
        *media.routes(svc),
        *events.routes(svc),
        *admin_jobs.routes(svc),
        *metrics.routes(svc),
        *admin_page.routes(svc),
    ]

    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        # Standby mode refuses writes for matched routes; the rate limit and the fast path for
        # cached reads are raw ASGI layers around Litestar (below).
        middleware=[*([standby_middleware()] if svc.standby is not None else [])],
        # Litestar features that take a store name get a namespace of the shared store, so
        # they work across workers (Litestar's default would be a per-process memory store).
        stores=StoreRegistry(default_factory=lambda name: svc.store.with_namespace(name)),
        exception_handlers=HANDLERS,
        request_max_body_size=MAX_BODY,
        logging_config=None,
        openapi_config=None
        if settings.production
        else OpenAPIConfig(title="monolith", version=__version__, path="/schema"),
        debug=False,
    )
    # Raw ASGI layers around Litestar's router and exception handler (as Litestar's own
    # OpenTelemetry middleware is): Litestar's `middleware=` runs only for matched routes, so
    # a 404 or 405 would get no request id, no access line and no count. Outermost the request
    # context (every request has its id, access line and count; during the drain it closes
    # connections), then the rate limiter (every request counted, 429s before any other work),
    # then the fast path for cache hits on public GETs (monolith.web.fastpath), then Litestar.
    context = RequestContextMiddleware(
        RateLimitMiddleware(
            FastPath(app.asgi_handler, svc.cache, direct=tuple(features.direct_reads(svc))), svc
        ),
        expose_worker=not settings.production,
        trusted_proxies=settings.server.trusted_proxies,
        metrics=svc.metrics,
        monitor=svc.observability.monitor,
        write_timeout=settings.database.write_timeout,
    )
    app.asgi_handler = context
    return app
