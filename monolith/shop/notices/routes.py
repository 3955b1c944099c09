"""Notice routes: public reads (cached), admin writes.

Bodies are decoded by :func:`monolith.web.body.decode` (a wrong type is a 422, an unknown
field too); a missing notice is a 404; writes need an admin (401/403 otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith.services import Services
from monolith.shop.notices import model
from monolith.shop.notices.cache import cached_latest_json, cached_notice_json
from monolith.shop.notices.effects import notices_changed
from monolith.shop.notices.model import Notice, NoticeIn, NoticePatch
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.conditional import cacheable_json
from monolith.web.guards import admin_guard

Req = Request[Any, Any, Any]
NoticeId = Annotated[int, Parameter(ge=1, le=2**62)]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    db = svc.db
    admin = [admin_guard(svc)]

    def missing(notice_id: int) -> NotFoundException:
        return NotFoundException(detail=f"notice {notice_id} not found")

    @get("/api/notices", summary="The newest notices")
    async def list_notices(
        request: Req,
        limit: Annotated[int, Parameter(ge=1, le=model.MAX_PAGE)] = model.DEFAULT_PAGE,
    ) -> Response[bytes]:
        return cacheable_json(request, await cached_latest_json(svc, limit))

    @get("/api/notices/{notice_id:int}", summary="One notice")
    async def get_notice(request: Req, notice_id: NoticeId) -> Response[bytes]:
        body = await cached_notice_json(svc, notice_id)
        if body is None:
            raise missing(notice_id)
        return cacheable_json(request, body)

    @post("/api/notices", guards=admin, summary="Post a notice (admin)")
    async def create_notice(request: Req) -> Notice:
        data = await decode(request, NoticeIn)
        async with db.transaction() as tx:
            notice = await model.create_notice(tx, data)
        await notices_changed(svc, [notice.id], [{"type": "notice.created", "notice": notice}])
        return notice

    @patch("/api/notices/{notice_id:int}", guards=admin, summary="Change a notice (admin)")
    async def update_notice(request: Req, notice_id: NoticeId) -> Notice:
        changes = (await decode(request, NoticePatch)).changes()
        if not changes:
            raise UnprocessableEntity(detail="body: no field to change")
        async with db.transaction() as tx:
            notice = await model.update_notice(tx, notice_id, changes)
        if notice is None:
            raise missing(notice_id)
        await notices_changed(svc, [notice_id], [{"type": "notice.updated", "notice": notice}])
        return notice

    @delete("/api/notices/{notice_id:int}", guards=admin, summary="Delete a notice (admin)")
    async def delete_notice(notice_id: NoticeId) -> None:
        async with db.transaction() as tx:
            if not await model.delete_notice(tx, notice_id):
                raise missing(notice_id)
        await notices_changed(svc, [notice_id], [{"type": "notice.deleted", "id": notice_id}])

    return [list_notices, get_notice, create_notice, update_notice, delete_notice]
