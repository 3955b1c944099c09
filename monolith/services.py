"""Everything a process starts and stops, built in one place (no module globals).

:func:`build_services` constructs the components from settings without any I/O; the app's
lifespan (or a CLI command) calls :meth:`Services.start` and :meth:`Services.stop`. Handlers
reach the components through closures over the ``Services`` object, never through
``app.state``: there is no per-process data here, only handles to shared state.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from monolith import fingerprint
from monolith.cache import Cache
from monolith.channels import open_channels
from monolith.config import Settings
from monolith.database.migrate import migrate
from monolith.db import Database, open_database
from monolith.events import EventHub
from monolith.jobs import Jobs
from monolith.media import MediaStorage, open_media
from monolith.observability import Metrics, Observability
from monolith.observability.sources import cache_families, job_families, replication_families
from monolith.replication.standby import StandbyMode
from monolith.sessions import Sessions
from monolith.state import HoldsState
from monolith.store import Store, open_store

HealthCheck = Callable[[], Awaitable[None]]
#: The store namespace of sessions, kept apart: never evicted to make room for the cache.
SESSIONS = "sessions"
#: Namespaces that live in the store's kept part (:meth:`Store.kept`).
KEPT_NAMESPACES = frozenset({SESSIONS})


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Cleanable(Protocol):
    """A component with housekeeping to do now and then (expired entries, old files)."""

    async def cleanup(self) -> Any: ...


@dataclass
class Components:
    """The app's components: what route handlers and jobs use (a job gets them as
    ``ctx.services``, typed ``JobContext[Components]``). Handles to shared state only."""

    settings: Settings
    db: Database
    #: The shared key/value store (``MONOLITH_STORE_URL``): cache, rate limits, sessions.
    store: Store
    #: Read-through cache over ``store`` (namespace ``cache``); see :mod:`monolith.cache`.
    cache: Cache
    #: Server-side sessions over ``store`` (namespace ``sessions``, never evicted for the cache).
    sessions: Sessions
    #: The process's Prometheus metrics (added up over every worker by ``/metrics``).
    metrics: Metrics
    #: Statement statistics, loop monitor, process gauges, dashboard history.
    observability: Observability
    #: Live events: publish after a commit, listen from SSE/WebSocket handlers.
    events: EventHub
    #: Uploaded files (product images).
    media: MediaStorage

    def cleanables(self) -> list[Cleanable]:
        """The components with housekeeping to do now and then (``maintenance.cleanup``)."""
        return [part for part in (self.store, self.media) if isinstance(part, Cleanable)]


@dataclass
class Services(Components):
    """Everything a process starts and stops: the components, the job component over them,
    and what ``doctor`` and readiness read."""

    #: The job queue: enqueue anywhere; runs jobs only where built with ``run_jobs``.
    jobs: Jobs[Components] = field(kw_only=True)
    #: Which component holds each piece of state ("database", "cache", "sessions", ...), for
    #: ``doctor``: each says its scope (process, box, shared) and describes its backend.
    state: dict[str, HoldsState] = field(default_factory=dict)
    #: Readiness checks by name; each raises (ideally StateUnavailable) when unhealthy.
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    #: The checks whose failure leaves this instance serving, degraded (the store: reads come
    #: from the database, limits count per process): readiness stays 200 and says "degraded",
    #: so a load balancer does not drain every instance over a dependency they all share.
    degradable: set[str] = field(default_factory=set)
    #: On a warm standby's data dir: the copy's age; the app serves reads only.
    standby: StandbyMode | None = None
    #: Apply pending migrations at start (never on a standby: its copy comes from the primary).
    migrate: bool = True
    #: Components started after the database, in order; stopped in reverse.
    components: list[Component] = field(default_factory=list)
    _started: list[Component] = field(default_factory=list)

    async def start(self) -> None:
        """Start the database, apply pending migrations, then start every component."""
        await self.db.start()
        self._started.append(self.db)
        if self.migrate:  # before any component (the job runner) touches the tables
            await migrate(self.db)
        for component in self.components:
            await component.start()
            self._started.append(component)
        await fingerprint.check_at_start(self.store, self.db)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()


def build_services(settings: Settings, *, run_jobs: bool = False) -> Services:
    """Construct every component from settings; connects to nothing.

    ``run_jobs``: this process competes to be the one that runs jobs and schedules
    (``serve``'s workers with ``MONOLITH_RUN_JOBS=auto``, ``monolith worker``).
    """
    db = open_database(
        settings.database.url,
        synchronous=settings.database.sqlite_synchronous,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        readers=settings.database.readers,
        pool_size=settings.database.pool_size,
        statement_timeout_ms=settings.database.statement_timeout_ms,
        idle_in_transaction_timeout_ms=settings.database.idle_in_transaction_timeout_ms,
        direct_url=settings.database.direct_url,
    )
    metrics = Metrics(peers=settings.metrics_peers)
    observability = Observability(settings, db, metrics)
    store = open_store(settings.store.url, size_limit_mb=settings.store.size_limit_mb)
    channels = open_channels(settings.channels_url, db, keep=settings.events_keep)
    components = Components(
        settings=settings,
        db=db,
        metrics=metrics,
        observability=observability,
        store=store,
        cache=Cache(store.with_namespace("cache"), metrics=metrics),
        sessions=Sessions(
            store.kept(SESSIONS),
            settings.security.secret_key,
            secure=settings.production,
        ),
        events=EventHub(channels),
        media=open_media(settings.media_dir, settings.media_url),
    )
    jobs: Jobs[Components] = Jobs(
        db,
        settings.jobs,
        data_dir=settings.data_dir,
        run=run_jobs,
        context=components,
        metrics=metrics,
    )
    observability.sources.append(functools.partial(job_families, jobs))
    observability.sources.append(functools.partial(cache_families, store))
    observability.sources.append(functools.partial(replication_families, settings))
    services = Services(**vars(components), jobs=jobs)
    # Observability first: it watches the statements and the loop of everything after it.
    # Then the store: jobs (started last) may use it from their first run.
    services.components += [observability, store, services.media, services.events, jobs]
    services.health_checks["database"] = db.ping
    services.health_checks["cache"] = store.ping
    services.degradable.add("cache")
    services.health_checks["jobs"] = jobs.check
    services.state.update(
        {
            "database": db,
            "cache": store,
            "rate limits": store,
            "sessions": store,
            **jobs.state_holders(),
            "uploads": services.media,
            "metrics": observability,
        }
    )
    if settings.replication.standby:
        services.standby = StandbyMode(
            settings.data_dir, settings.replication.standby_max_lag_seconds
        )
        services.migrate = False
        services.health_checks["standby"] = services.standby.check
    if isinstance(channels, HoldsState):  # every backend of ours is; a foreign one is "absent"
        services.state["pub/sub"] = channels
    return services
