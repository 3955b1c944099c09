"""Which database the shared store's data belongs to: a fingerprint kept in the store.

Cached products, sessions and ``/api/me`` are copies of rows of one database. Point the
instances at another database while keeping the store (same Redis, same namespace) and they
would serve the old database's data. So the store keeps the fingerprint of the database it
caches for (key ``database`` in the ``meta`` namespace): written when a process starts on an
empty store, compared at every start (a warning in the log) and by ``monolith doctor`` (a
problem naming both), and reset by ``monolith cache clear``.

The fingerprint is the database's description (its URL without the password): another file,
another server or another database name is another database.
"""

from __future__ import annotations

import hashlib

from monolith.database.base import Database
from monolith.logs import get_logger
from monolith.store import Store

log = get_logger("monolith.fingerprint")

NAMESPACE = "meta"
KEY = "database"


def of(db: Database) -> str:
    return hashlib.sha256(db.describe().encode()).hexdigest()[:16] + " " + db.describe()


async def stored(store: Store) -> str | None:
    raw = await store.with_namespace(NAMESPACE).get(KEY)
    return None if raw is None else raw.decode()


async def claim(store: Store, db: Database) -> str | None:
    """Record ``db`` as the store's database if none is; the other database's fingerprint
    when the store holds one (the caller warns), else None."""
    mine = of(db)
    found = await stored(store)
    if found is None:
        await store.with_namespace(NAMESPACE).set(KEY, mine)
        return None
    return None if found == mine else found


async def reset(store: Store, db: Database) -> None:
    await store.with_namespace(NAMESPACE).set(KEY, of(db))


async def check_at_start(store: Store, db: Database) -> None:
    """Log a warning when the store holds another database's data (never fails a start)."""
    try:
        other = await claim(store, db)
    except Exception as exc:  # a store that is down is reported by readiness, not here
        log.warning("store fingerprint not checked", error=str(exc))
        return
    if other is not None:
        log.warning(
            "the shared store holds data cached for another database; run monolith cache clear",
            store_database=other.split(" ", 1)[-1],
            database=db.describe(),
        )
