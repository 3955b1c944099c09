"""``GET /admin``: the operations page, its sign-in, its assets and its data.

The page is static HTML plus ``admin.js`` and ``admin.css`` served from the package (no CDN);
the script polls ``GET /api/admin/overview`` and draws the plots as inline SVG. Every
response carries a strict Content-Security-Policy: scripts, styles and requests from this
origin only, no inline script, no framing.

Signing in posts the admin token to ``/admin/login``, which sets the signed cookie of
:mod:`monolith.web.admin_session`; a request that already carries the bearer token sees the
page directly.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from monolith.observability.overview import overview
from monolith.services import Services
from monolith.web import admin_session
from monolith.web.guards import admin_guard, bearer_token, is_admin_token

Req = Request[Any, Any, Any]
ASSETS = Path(__file__).parent / "static" / "admin"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def routes(svc: Services) -> list[ControllerRouterHandler]:
    settings = svc.settings
    page = (ASSETS / "page.html").read_text()
    signin = (ASSETS / "signin.html").read_text()

    def is_admin(request: Req) -> bool:
        token = bearer_token(request)
        if token is not None:
            return is_admin_token(settings, token)
        return admin_session.valid(settings, request.cookies.get(admin_session.COOKIE))

    def signin_page(error: str = "", status: int = 200) -> Response[str]:
        note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return Response(
            signin.replace("{error}", note),
            media_type=MediaType.HTML,
            status_code=status,
            headers=HEADERS,
        )

    @get("/admin", include_in_schema=False)
    async def admin_page(request: Req) -> Response[str]:
        if not is_admin(request):
            return signin_page()
        return Response(page, media_type=MediaType.HTML, headers=HEADERS)

    @post("/admin/login", include_in_schema=False)
    async def login(request: Req) -> Response[Any]:
        if not settings.security.admin_token:
            return signin_page("No admin token is configured (set MONOLITH_ADMIN_TOKEN).", 403)
        form = await request.form()
        token = form.get("token")
        if not isinstance(token, str) or not is_admin_token(settings, token.strip()):
            return signin_page("That is not the admin token.", 401)
        return Redirect(
            "/admin",
            status_code=303,
            headers={
                **HEADERS,
                "Set-Cookie": admin_session.set_cookie(settings, admin_session.issue(settings)),
            },
        )

    @post("/admin/logout", include_in_schema=False)
    async def logout() -> Response[Any]:
        return Redirect(
            "/admin",
            status_code=303,
            headers={**HEADERS, "Set-Cookie": admin_session.clear_cookie(settings)},
        )

    @get(
        "/api/admin/overview",
        guards=[admin_guard(settings)],
        summary="Everything the operations page shows (admin)",
    )
    async def admin_overview() -> Response[dict[str, Any]]:
        return Response(await overview(svc.observability, svc.jobs), headers=HEADERS)

    async def nosniff(response: Response[Any]) -> Response[Any]:
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    assets = create_static_files_router(
        path="/admin/static",
        directories=[ASSETS],
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),
        after_request=nosniff,
        name="admin-assets",
    )
    return [admin_page, login, logout, admin_overview, assets]
