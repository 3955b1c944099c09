"""The notices' job and its schedule: ``notices.expire``, daily at 04:10 UTC.

It deletes the notices unchanged for ``payload.days`` days (default 90), then drops their
cached reads strictly (a store that is down makes the job retry). Safe to run twice
(delivery is at least once): a second run finds nothing to delete.
"""

from __future__ import annotations

import time

import msgspec

from monolith.jobs import JobContext, job, schedule
from monolith.services import Components
from monolith.shop.notices.effects import notices_changed
from monolith.shop.notices.model import EXPIRE_JOB, ExpirePayload, delete_older_than


@job(EXPIRE_JOB, max_attempts=5, timeout=300, concurrency=1)
async def expire(ctx: JobContext[Components]) -> None:
    payload = msgspec.convert(ctx.payload or {}, ExpirePayload)
    svc = ctx.services
    async with svc.db.transaction() as tx:
        gone = await delete_older_than(tx, time.time() - payload.days * 86400)
    events = [{"type": "notice.deleted", "id": notice_id} for notice_id in gone]
    await notices_changed(svc, gone, events, strict=True)


schedule(EXPIRE_JOB, EXPIRE_JOB, cron="10 4 * * *")
