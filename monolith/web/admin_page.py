"""``GET /admin``: the operations page, its sign-in, its assets and its data.

The page is static HTML plus ``admin.js`` and ``admin.css`` served from the package (no CDN);
the script polls ``GET /api/admin/overview`` and draws the plots as inline SVG. Every
response carries a strict Content-Security-Policy: scripts, styles and requests from this
origin only, no inline script, no framing.

Who sees it: an admin (:func:`monolith.web.guards.admin_credential`). The sign-in form posts an
admin account's email and password to ``/admin/login``, which starts the same session
``POST /api/auth/login`` does (so the page and the API share it); the admin token is the
alternative, and leaves the signed cookie of :mod:`monolith.web.admin_session`. A request that
carries the bearer token sees the page directly. ``/admin/login`` has the ``login`` rate limit
(:mod:`monolith.web.ratelimit`); the page's own changes send the CSRF header.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from monolith.accounts import model as accounts
from monolith.observability.overview import overview
from monolith.services import Services
from monolith.sessions import COOKIE
from monolith.web import admin_session
from monolith.web.guards import (
    WRONG_CREDENTIALS,
    admin_credential,
    admin_guard,
    bearer_token,
    current_user,
    is_admin_token,
    start_session,
)

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
#: Longest email and password the form takes (as ``POST /api/auth/login`` does).
MAX_EMAIL, MAX_PASSWORD = 254, 1024


def _field(form: Any, name: str, *, strip: bool = True) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value.strip() if strip else value


def routes(svc: Services) -> list[ControllerRouterHandler]:
    settings = svc.settings
    page = (ASSETS / "page.html").read_text()
    signin = (ASSETS / "signin.html").read_text()
    token_form = (ASSETS / "token.html").read_text() if settings.security.admin_token else ""

    def signin_page(error: str = "", status: int = 200, email: str = "") -> Response[str]:
        """The sign-in form; after a failed attempt it keeps the email that was typed."""
        note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return Response(
            signin.replace("{error}", note)
            .replace("{email}", html.escape(email[:MAX_EMAIL], quote=True))
            .replace("{token}", token_form),
            media_type=MediaType.HTML,
            status_code=status,
            headers=HEADERS,
        )

    def signed_in(cookie: str) -> Redirect:
        return Redirect("/admin", status_code=303, headers={**HEADERS, "Set-Cookie": cookie})

    @get("/admin", include_in_schema=False)
    async def admin_page(request: Req) -> Response[str]:
        try:
            via = await admin_credential(svc, request)
        except NotAuthorizedException:
            return signin_page()
        except PermissionDeniedException:
            if bearer_token(request) is not None:
                return signin_page("That is not the admin token.", 403)
            user = await current_user(svc, request)
            email = user.email if user is not None else "This account"
            return signin_page(f"{email} is not an admin: sign in with an admin account.", 403)
        user = await current_user(svc, request) if via == "cookie" else None
        who = user.email if user is not None and user.role == "admin" else "admin token"
        return Response(
            page.replace("{who}", html.escape(who)), media_type=MediaType.HTML, headers=HEADERS
        )

    @post("/admin/login", include_in_schema=False)
    async def login(request: Req) -> Response[Any]:
        form = await request.form()
        token = _field(form, "token")
        if token:
            if not settings.security.admin_token:
                return signin_page("No admin token is configured (MONOLITH_ADMIN_TOKEN).", 403)
            if not is_admin_token(settings, token):
                return signin_page("That is not the admin token.", 401)
            return signed_in(admin_session.set_cookie(settings, admin_session.issue(settings)))
        email, password = _field(form, "email"), _field(form, "password", strip=False)
        if not email or not password:
            return signin_page("Enter the email and password of an admin account.", 400, email)
        user = None
        if len(email) <= MAX_EMAIL and len(password) <= MAX_PASSWORD:
            user = await accounts.authenticate(svc.db, email, password)
        if user is None:
            return signin_page(WRONG_CREDENTIALS.capitalize() + ".", 401, email)
        if user.role != "admin":
            return signin_page(f"{user.email} is not an admin.", 403, email)
        return signed_in(await start_session(svc, request, user))

    @post("/admin/logout", include_in_schema=False)
    async def logout(request: Req) -> Response[Any]:
        await svc.sessions.destroy(request.cookies.get(COOKIE))
        response: Response[Any] = Redirect("/admin", status_code=303, headers=HEADERS)
        response.headers["Set-Cookie"] = svc.sessions.clear_cookie()
        response.delete_cookie(admin_session.COOKIE, path="/")
        return response

    @get(
        "/api/admin/overview",
        guards=[admin_guard(svc)],
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
