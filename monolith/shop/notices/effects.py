"""What follows a committed change to notices: the one place that says it.

1. their cached reads are dropped (their own ``notice`` keys and every ``notices`` list), so
   no worker serves the old ones again;
2. the events are published on the ``notices`` channel.

The change is committed before this runs, so a failure here (the store down) never turns
the request's answer into an error: it is logged and the client gets the committed result.
A job asks for it to be raised (``strict=True``) so that it is retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from monolith.errors import MonolithError
from monolith.logs import get_logger
from monolith.services import Components
from monolith.shop.notices.cache import NOTICE, NOTICES

log = get_logger("monolith.notices")

CHANNEL = "notices"


async def notices_changed(
    svc: Components,
    notice_ids: Iterable[int],
    events: Sequence[dict[str, Any]] = (),
    *,
    strict: bool = False,
) -> None:
    ids = sorted(set(notice_ids))
    failure: MonolithError | None = None
    try:
        for notice_id in ids:
            await svc.cache.invalidate(NOTICE, notice_id)
        await svc.cache.invalidate_all(NOTICES)
    except MonolithError as exc:
        log.warning("cache not invalidated after a notice change", notices=ids, error=str(exc))
        failure = exc
    for event in events:
        svc.events.publish_soon(CHANNEL, event)
    if strict and failure is not None:
        raise failure
