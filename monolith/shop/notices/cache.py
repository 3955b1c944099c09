"""The notices' cached reads; each key is declared here, with its strategy.

Both are dropped by :func:`monolith.shop.notices.effects.notices_changed` after every
committed change (the notice's own key, and every list).
"""

from __future__ import annotations

from monolith.cache import cached
from monolith.services import Components
from monolith.shop.notices.model import latest_json, notice_json

NOTICE = "notice"
NOTICES = "notices"


@cached(NOTICE, ttl=300, strategy="invalidate-on-write")
async def cached_notice_json(svc: Components, notice_id: int) -> bytes | None:
    """``GET /api/notices/{id}``'s body (None: no such notice, cached too)."""
    return await notice_json(svc.db, notice_id)


@cached(NOTICES, ttl=60, strategy="invalidate-on-write")
async def cached_latest_json(svc: Components, limit: int) -> bytes:
    """``GET /api/notices``'s body; any write can change any list, so a write drops them all."""
    return await latest_json(svc.db, limit)
