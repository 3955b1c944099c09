"""``GET /metrics`` (Prometheus text, every worker added up) and ``GET /api/admin/queries``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Response, get
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith.observability.metrics import CONTENT_TYPE
from monolith.services import Services
from monolith.web.guards import admin_guard, metrics_guard


def routes(svc: Services) -> list[ControllerRouterHandler]:
    obs = svc.observability

    @get(
        "/metrics",
        guards=[metrics_guard(svc)],
        summary="Prometheus metrics of every worker (admin token, or a loopback client)",
        include_in_schema=False,
    )
    async def metrics() -> Response[bytes]:
        return Response(
            await obs.render(),
            media_type=CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/api/admin/queries",
        guards=[admin_guard(svc)],
        summary="Top SQL statements, normalized, with calls and times (admin)",
    )
    async def queries(
        limit: Annotated[int, Parameter(ge=1, le=500)] = 20,
        order: Annotated[Literal["total", "calls", "mean", "max"], Parameter()] = "total",
    ) -> dict[str, Any]:
        source, rows = await obs.top_statements(limit, order)
        return {"source": source, "order": order, "statements": [r.as_dict() for r in rows]}

    return [metrics, queries]
