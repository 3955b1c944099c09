"""The features the app serves: the one list of the domain wing.

Importing this module registers every feature's jobs and schedules (``@job`` runs at import),
so every process that builds the app's services imports it: ``serve`` through
:mod:`monolith.app`, ``monolith worker`` and the CLI through :mod:`monolith.cli.common`.
A new feature adds its ``routes`` here and imports its ``jobs`` module.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from monolith import maintenance
from monolith.accounts import routes as accounts
from monolith.jobs import REGISTRY
from monolith.services import Services
from monolith.shop.catalog import routes as catalog
from monolith.shop.notices import jobs as notices_jobs
from monolith.shop.notices import routes as notices
from monolith.shop.orders import jobs as order_jobs
from monolith.shop.orders import routes as orders
from monolith.web.fastpath import DirectRead

#: Modules imported for the jobs and schedules they register (into :data:`REGISTRY`).
JOB_MODULES = (maintenance, order_jobs, notices_jobs)

__all__ = ["JOB_MODULES", "REGISTRY", "direct_reads", "routes"]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    """Every feature's HTTP handlers."""
    return [
        *catalog.routes(svc),
        *accounts.routes(svc),
        *orders.routes(svc),
        *notices.routes(svc),
    ]


def direct_reads(svc: Services) -> list[DirectRead]:
    """Public reads the fast path answers without Litestar (monolith.web.fastpath)."""
    return [*catalog.direct_reads(svc)]
