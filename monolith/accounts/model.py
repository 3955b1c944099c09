"""Accounts: users, argon2id passwords, roles and public profiles.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile) in
one of two threads per process: one hash takes a few hundred milliseconds of
CPU and 64 MiB, and must neither stall the event loop nor let a burst of logins exhaust memory.
At most ``HASH_QUEUE`` more wait for a thread; past that a sign-in is refused at once with
:class:`HashingBusy` (503 + ``Retry-After``) instead of waiting behind a queue that only grows
(100 logins at once would otherwise each wait for the 99 before them, for seconds).
A login with an unknown email still verifies against a fixed hash, so both failures cost the
same time and give the same answer.

This module must never log, return or store a password, only its hash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email

from monolith.db import Database, Queries, Row
from monolith.errors import IntegrityViolation, InvalidField, StateUnavailable
from monolith.patch import Patch

T = TypeVar("T")
Role = Literal["user", "admin"]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Bio = Annotated[str, msgspec.Meta(max_length=2000)]

_COLUMNS = "id, email, name, bio, role, created_at"
_hasher = PasswordHasher()
#: Hashing threads per process, and how many hashes may wait for one of them.
HASH_THREADS = 2
HASH_QUEUE = 6


class HashingBusy(StateUnavailable):
    """Every hashing thread is busy and the queue in front of them is full (HTTP 503)."""

    public = "too many sign-ins at once; retry in a moment"


class _Hashing:
    """A thread pool with a bounded queue: a call past ``threads + queue`` fails at once."""

    def __init__(self, threads: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self.capacity = threads + queue
        self.admitted = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.admitted >= self.capacity:
            raise HashingBusy("too many sign-ins at once; retry in a moment", retry_after=1)
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.admitted -= 1


_hashing = _Hashing(HASH_THREADS, HASH_QUEUE)
# Verified against when the email is unknown, so that answer takes as long as a wrong password
# (the hash of a random string nobody knows; made once with the same parameters).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$R8XyCe0dFiqVW47xNv139g$"
    "Xi7LdWGxj5km7fs9pxhGwU9TllSYdYNfEhJQ+/1qang"
)


class Signup(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class Login(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class ProfilePatch(Patch):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType = msgspec.UNSET


class User(msgspec.Struct):
    """What ``GET /api/me`` shows: the account, never its password hash."""

    id: int
    email: str
    name: str
    bio: str
    role: Role
    created_at: float


class Profile(msgspec.Struct):
    """What anyone may see of a user."""

    id: int
    name: str
    bio: str


class InvalidEmail(InvalidField):
    """Not an email address (HTTP 422)."""


class EmailTaken(IntegrityViolation):
    """An account with this email exists (HTTP 409)."""


def normalize_email(email: str) -> str:
    """The address in the form it is stored and looked up in: checked by email-validator (the
    syntax of RFC 5321/5322 and IDNA; no DNS lookup), then lowercased."""
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"email: not an email address ({exc})") from None
    return checked.normalized.lower()


def to_user(row: Row) -> User:
    return User(
        id=int(row["id"]),
        email=row["email"],
        name=row["name"],
        bio=row["bio"],
        role=row["role"],
        created_at=float(row["created_at"]),
    )


async def hash_password(password: str) -> str:
    return await _hashing.run(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    try:
        return await _hashing.run(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def get_user(q: Queries, user_id: int) -> User | None:
    row = await q.fetch_one(f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,))
    return None if row is None else to_user(row)


async def create_user(
    db: Database, email: str, password: str, name: str, role: Role = "user"
) -> User:
    email = normalize_email(email)
    password_hash = await hash_password(password)
    now = time.time()
    try:
        async with db.transaction() as tx:
            row = await tx.fetch_one(
                "INSERT INTO users (email, password_hash, name, role, created_at, updated_at) "
                f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (email, password_hash, name, role, now, now),
            )
    except IntegrityViolation:
        raise EmailTaken("an account with this email already exists") from None
    assert row is not None
    return to_user(row)


async def authenticate(db: Database, email: str, password: str) -> User | None:
    """The user these credentials belong to, or None (the same for both ways of being wrong)."""
    row = await db.fetch_one(
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE email = ?", (email.strip().lower(),)
    )
    stored = row["password_hash"] if row is not None else _DUMMY_HASH
    if not await _verify(stored, password) or row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        new_hash = await hash_password(password)
        async with db.transaction() as tx:
            await tx.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, row["id"])
            )
    return to_user(row)


async def update_profile(db: Database, user_id: int, changes: dict[str, str]) -> User | None:
    # Column names come from ProfilePatch's fields, never from the client.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ? RETURNING {_COLUMNS}",
            (*changes.values(), time.time(), user_id),
        )
    return None if row is None else to_user(row)


async def make_admin(db: Database, email: str, password: str | None) -> tuple[User, bool]:
    """Create an admin, or promote (and with ``password``, re-password) an existing user.

    Returns the user and whether it was created.
    """
    email = normalize_email(email)
    existing = await db.fetch_one("SELECT id FROM users WHERE email = ?", (email,))
    if existing is None:
        if password is None:
            raise ValueError("a new admin needs a password")
        return await create_user(db, email, password, email.split("@")[0][:100], "admin"), True
    new_hash = None if password is None else await hash_password(password)
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            "UPDATE users SET role = 'admin', password_hash = COALESCE(?, password_hash), "
            f"updated_at = ? WHERE id = ? RETURNING {_COLUMNS}",
            (new_hash, time.time(), existing["id"]),
        )
    assert row is not None
    return to_user(row), False
