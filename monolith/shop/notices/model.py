"""The notices' model: their types, queries and writes (no HTTP, no cache, no events).

Reads used by routes return encoded JSON bytes, so a cache holds exactly what is sent.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec

from monolith.db import Database, Queries, Transaction, row_as, rows_as
from monolith.patch import Patch

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Body = Annotated[str, msgspec.Meta(max_length=5000)]

MAX_PAGE = 100
DEFAULT_PAGE = 20
#: The job that forgets old notices, and how old "old" is by default.
EXPIRE_JOB = "notices.expire"
KEEP_DAYS = 90


class NoticeIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/notices``'s body: an unknown field or a wrong type is a 422."""

    title: Title
    body: Body = ""


class NoticePatch(Patch):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    body: Body | msgspec.UnsetType = msgspec.UNSET


class Notice(msgspec.Struct):
    id: int
    title: str
    body: str
    created_at: float
    updated_at: float


class NoticeList(msgspec.Struct):
    items: list[Notice]


class ExpirePayload(msgspec.Struct):
    days: int = KEEP_DAYS


_COLUMNS = "id, title, body, created_at, updated_at"
_encoder = msgspec.json.Encoder()


async def get_notice(q: Queries, notice_id: int) -> Notice | None:
    row = await q.fetch_one(f"SELECT {_COLUMNS} FROM notices WHERE id = ?", (notice_id,))
    return None if row is None else row_as(Notice, row)


async def latest_notices(q: Queries, limit: int) -> list[Notice]:
    """The newest ``limit`` notices, newest first."""
    rows = await q.fetch_all(f"SELECT {_COLUMNS} FROM notices ORDER BY id DESC LIMIT ?", (limit,))
    return rows_as(Notice, rows)


async def notice_json(db: Database, notice_id: int) -> bytes | None:
    notice = await get_notice(db, notice_id)
    return None if notice is None else _encoder.encode(notice)


async def latest_json(db: Database, limit: int) -> bytes:
    return _encoder.encode(NoticeList(items=await latest_notices(db, limit)))


async def create_notice(tx: Transaction, data: NoticeIn) -> Notice:
    now = time.time()
    row = await tx.fetch_one(
        f"INSERT INTO notices (title, body, created_at, updated_at) VALUES (?, ?, ?, ?) "
        f"RETURNING {_COLUMNS}",
        (data.title, data.body, now, now),
    )
    assert row is not None
    return row_as(Notice, row)


async def update_notice(tx: Transaction, notice_id: int, changes: dict[str, Any]) -> Notice | None:
    if not changes:
        return await get_notice(tx, notice_id)
    # Column names come from NoticePatch's fields, never from the client.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    row = await tx.fetch_one(
        f"UPDATE notices SET {assignments}, updated_at = ? WHERE id = ? RETURNING {_COLUMNS}",
        (*changes.values(), time.time(), notice_id),
    )
    return None if row is None else row_as(Notice, row)


async def delete_notice(tx: Transaction, notice_id: int) -> bool:
    return await tx.execute("DELETE FROM notices WHERE id = ?", (notice_id,)) > 0


async def delete_older_than(tx: Transaction, cutoff: float) -> list[int]:
    """Delete the notices last changed before ``cutoff``; returns their ids."""
    rows = await tx.fetch_all("DELETE FROM notices WHERE updated_at < ? RETURNING id", (cutoff,))
    return sorted(int(r["id"]) for r in rows)
