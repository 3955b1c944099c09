"""The accounts' cached reads, each key declared here with its strategy, and what follows a
committed change to a user (:func:`user_changed`)."""

from __future__ import annotations

from monolith.accounts.model import Profile, User, get_user
from monolith.cache import cached
from monolith.services import Components

USER = "user"
PROFILE = "profile"


@cached(USER, ttl=300, strategy="invalidate-on-write")
async def load_user(svc: Components, user_id: int) -> User | None:
    """The account behind a session; invalidated by profile changes and role changes."""
    return await get_user(svc.db, user_id)


@cached(PROFILE, ttl=300, strategy="invalidate-on-write")
async def load_profile(svc: Components, user_id: int) -> Profile | None:
    """The public profile; invalidated by ``PATCH /api/me/profile`` and ``create-admin``."""
    user = await get_user(svc.db, user_id)
    return None if user is None else Profile(user.id, user.name, user.bio)


async def user_changed(svc: Components, user_id: int) -> None:
    """Call after any committed write to a user: every worker stops serving the old one."""
    await svc.cache.invalidate(USER, user_id)
    await svc.cache.invalidate(PROFILE, user_id)
