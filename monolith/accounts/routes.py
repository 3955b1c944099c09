"""Accounts over HTTP: signup, login, logout, ``/api/me``, profiles.

Login answers a wrong password and an unknown email with the same 401 and detail. No route
here echoes, logs or stores a password; request bodies are never logged anywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, patch, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from monolith.accounts import model as accounts
from monolith.accounts.cache import load_profile, user_changed
from monolith.accounts.model import Login, Profile, ProfilePatch, Signup, User
from monolith.services import Services
from monolith.sessions import COOKIE
from monolith.web.body import UnprocessableEntity, decode
from monolith.web.fastpath import MEMO
from monolith.web.guards import WRONG_CREDENTIALS, current_session, require_user, start_session

Req = Request[Any, Any, Any]
UserId = Annotated[int, Parameter(ge=1, le=2**62)]


def routes(svc: Services) -> list[ControllerRouterHandler]:
    @post("/api/auth/signup", status_code=201, summary="Create an account")
    async def signup(request: Req) -> User:
        data = await decode(request, Signup)
        return await accounts.create_user(svc.db, data.email, data.password, data.name)

    @post("/api/auth/login", status_code=200, summary="Sign in; sets the session cookie")
    async def login(request: Req) -> Response[User]:
        data = await decode(request, Login)
        user = await accounts.authenticate(svc.db, data.email, data.password)
        if user is None:
            raise NotAuthorizedException(detail=WRONG_CREDENTIALS)
        return Response(user, headers={"Set-Cookie": await start_session(svc, request, user)})

    @post("/api/auth/logout", status_code=204, summary="Sign out")
    async def logout(request: Req) -> Response[None]:
        if await current_session(svc, request) is None:
            raise NotAuthorizedException(detail="sign in first")
        await svc.sessions.destroy(request.cookies.get(COOKIE))
        return Response(None, status_code=204, headers={"Set-Cookie": svc.sessions.clear_cookie()})

    @get("/api/me", summary="The signed-in account")
    async def me(request: Req) -> User:
        return await require_user(svc, request)

    @get("/api/users/{user_id:int}/profile", summary="A public profile (cached)", opt=MEMO)
    async def profile(user_id: UserId) -> Profile:
        found = await load_profile(svc, user_id)
        if found is None:
            raise NotFoundException(detail=f"user {user_id} not found")
        return found

    @patch("/api/me/profile", summary="Change your name or bio")
    async def update_profile(request: Req) -> Profile:
        user = await require_user(svc, request)
        changes = (await decode(request, ProfilePatch)).changes()
        if not changes:
            raise UnprocessableEntity(detail="body: no field to change")
        updated = await accounts.update_profile(svc.db, user.id, changes)
        if updated is None:
            raise NotAuthorizedException(detail="sign in first")
        await user_changed(svc, user.id)
        return Profile(updated.id, updated.name, updated.bio)

    return [signup, login, logout, me, profile, update_profile]
