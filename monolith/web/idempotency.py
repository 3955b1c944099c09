"""``Idempotency-Key`` on writes (draft-ietf-httpapi-idempotency-key-header).

A client that timed out cannot know whether its write was committed; retrying with the same
``Idempotency-Key`` makes the retry safe:

- the same key with the same request (method, path, body) within ``KEEP_SECONDS`` (24 h)
  gets the first response again (status and body, with ``Idempotent-Replayed: true``), and
  nothing is written twice;
- the same key with another request is a 422;
- a duplicate sent while the first is still running waits for the first and replays it
  (at most ``WAIT_SECONDS``; after that, a 409: "still in progress", retry later);
- keys are per client (the signed-in user, or the admin token): two clients never collide;
- a request without the header works as before; only successful writes are recorded, so a
  refused request (409 short of stock, 422) may be retried with its key once fixed.

The record is written in the same transaction as the write: a committed order always has its
record and the other way round, so a crash between the two cannot leave a write that a
retry would repeat. Two duplicates racing meet on the table's primary key: the second one's
whole transaction rolls back (on PostgreSQL its insert waits for the first to commit), then
it replays the first one's response.

This module must never record a response whose transaction did not commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response

from monolith.db import Database, Transaction
from monolith.errors import Conflict, IntegrityViolation, InvalidField, InvalidInput
from monolith.services import Services
from monolith.web.guards import bearer_token, current_session, is_admin_token

T = TypeVar("T")
Req = Request[Any, Any, Any]

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEEP_SECONDS = 24 * 3600
WAIT_SECONDS = 10.0
MAX_KEY = 255


class KeyReused(InvalidField):
    """The key was used with another request (HTTP 422)."""


class KeyInProgress(Conflict):
    """A request with this key is still being processed (HTTP 409)."""


class _KeyTaken(Exception):
    """The record's insert met another one: roll the whole transaction back."""


@dataclass(frozen=True, slots=True)
class Keyed:
    scope: str
    key: str
    fingerprint: str


def parse_key(value: str) -> str:
    """The key of a header value (a bare token, or a structured-field string in quotes)."""
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY or not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise InvalidInput(
            f"Idempotency-Key: 1-{MAX_KEY} visible ASCII characters (a UUID is a good key)"
        )
    return key


async def client_scope(svc: Services, request: Req) -> str:
    """Whose keys these are: the admin token, the signed-in user, or the admin page's cookie."""
    if is_admin_token(svc.settings, bearer_token(request)):
        return "admin-token"
    session = await current_session(svc, request)
    if session is not None:
        return f"user:{session.user_id}"
    return "admin-session"  # the admin page's own signed cookie (admin routes only)


async def keyed(svc: Services, request: Req) -> Keyed | None:
    """The request's key, scoped to its client, or None without the header."""
    header = request.headers.get(HEADER)
    if header is None:
        return None
    key = parse_key(header)
    body = await request.body()
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body)
    return Keyed(await client_scope(svc, request), key, digest.hexdigest())


async def _replay(db: Database, k: Keyed, now: float) -> Response[bytes] | None:
    row = await db.fetch_one(
        "SELECT fingerprint, status, body FROM idempotency_keys "
        "WHERE scope = ? AND key = ? AND created_at > ?",
        (k.scope, k.key, now - KEEP_SECONDS),
    )
    if row is None:
        return None
    if row["fingerprint"] != k.fingerprint:
        raise KeyReused("Idempotency-Key: already used with another request")
    return Response(
        bytes(row["body"]),
        status_code=int(row["status"]),
        media_type=MediaType.JSON,
        headers={REPLAYED: "true"},
    )


async def _record(tx: Transaction, k: Keyed, status: int, body: bytes, now: float) -> None:
    await tx.execute(
        "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND created_at <= ?",
        (k.scope, k.key, now - KEEP_SECONDS),
    )
    try:
        await tx.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (k.scope, k.key, k.fingerprint, status, body, now),
        )
    except IntegrityViolation as exc:
        raise _KeyTaken from exc


async def write_once(
    svc: Services,
    request: Req,
    write: Callable[[Transaction], Awaitable[T]],
    *,
    status: int,
) -> T | Response[bytes]:
    """Run ``write`` in a transaction, once per ``Idempotency-Key``.

    Returns what ``write`` returned (the caller runs what follows a commit, then answers as
    usual with ``status``), or the stored response of an earlier request with the same key
    (the caller returns it as is: what followed that commit already ran).
    """
    db = svc.db
    k = await keyed(svc, request)
    if k is None:
        async with db.transaction() as tx:
            return await write(tx)
    replay = await _replay(db, k, time.time())
    if replay is not None:
        return replay
    try:
        async with db.transaction() as tx:
            result = await write(tx)
            body = b"" if result is None else msgspec.json.encode(result)
            await _record(tx, k, status, body, time.time())
    except _KeyTaken:
        return await _wait_for_first(db, k)
    return result


async def _wait_for_first(db: Database, k: Keyed) -> Response[bytes]:
    """The response of the request that took the key first, once it is committed."""
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.01
    while True:
        replay = await _replay(db, k, time.time())
        if replay is not None:
            return replay
        if time.monotonic() >= deadline:
            raise KeyInProgress("Idempotency-Key: a request with this key is still in progress")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def prune(db: Database, now: float) -> int:
    """Forget records past ``KEEP_SECONDS`` (the ``maintenance.cleanup`` job)."""
    async with db.transaction() as tx:
        return await tx.execute(
            "DELETE FROM idempotency_keys WHERE created_at <= ?", (now - KEEP_SECONDS,)
        )
