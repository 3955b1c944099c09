"""Liveness and readiness for systemd, Caddy's health checks and monitoring.

``/health/ready`` answers three ways: 200 ``ok``; 200 ``degraded`` when only a dependency
that every instance shares and the app can serve without is failing (the store: a load
balancer that drained on it would drain every instance at once); 503 when this instance
cannot serve (its database, its job runner). A failed check is named with the kind of
failure (no internal host or path: the page is public); the whole error goes to the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from litestar.types import ControllerRouterHandler

from monolith.errors import StateUnavailable
from monolith.logs import get_logger
from monolith.services import Services

log = get_logger("monolith.health")

CHECK_TIMEOUT = 2.0


def routes(svc: Services) -> list[ControllerRouterHandler]:
    @get("/health/live", summary="200 while the process runs", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", summary="200 when every dependency is healthy", include_in_schema=False)
    async def ready() -> Response[dict[str, Any]]:
        async def run(name: str) -> tuple[str, str | None]:
            try:
                await asyncio.wait_for(svc.health_checks[name](), CHECK_TIMEOUT)
            except TimeoutError:
                return name, "timed out"
            except StateUnavailable as exc:
                log.warning("readiness check failed", check=name, error=str(exc))
                return name, exc.public
            except Exception as exc:
                log.warning("readiness check failed", check=name, error=repr(exc))
                return name, exc.__class__.__name__
            return name, None

        results = await asyncio.gather(*(run(n) for n in svc.health_checks))
        checks = {name: (error or "ok") for name, error in results}
        failed = [name for name, error in results if error]
        # A standby says how far behind its copy is, ready or not.
        extra = {"standby": svc.standby.state()} if svc.standby is not None else {}
        if failed and all(name in svc.degradable for name in failed):
            return Response(
                {
                    "status": "degraded",
                    "detail": "degraded: " + ", ".join(f"{n} ({checks[n]})" for n in failed),
                    "checks": checks,
                    **extra,
                }
            )
        if failed:
            return Response(
                {
                    "status_code": 503,
                    "detail": "not ready: " + ", ".join(f"{n} ({checks[n]})" for n in failed),
                    "checks": checks,
                    **extra,
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return Response({"status": "ok", "checks": checks, **extra})

    return [live, ready]
