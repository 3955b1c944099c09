"""The peer's settings, from ``SEED_*`` environment variables (the harness sets them)."""

from __future__ import annotations

import os

DATABASE_URL = os.environ.get("SEED_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/seed")
REDIS_URL = os.environ.get("SEED_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("SEED_PREFIX", "seedbench")
CACHE_PRODUCTS = os.environ.get("SEED_CACHE_PRODUCTS", "on") != "off"
ADMIN_TOKEN = os.environ.get("SEED_ADMIN_TOKEN", "")
QUEUE = f"{PREFIX}:queue"
# SQLAlchemy's default pool (5 kept + 10 overflow) closes every connection above 5 when it is
# returned, so under a few dozen concurrent requests per worker it opens and closes PostgreSQL
# connections all the time (TLS negotiation included). The bench sizes the pool to the load
# instead, so the peer is measured at its best; SEED_POOL_SIZE=5 SEED_MAX_OVERFLOW=10 gives
# the defaults back.
POOL_SIZE = int(os.environ.get("SEED_POOL_SIZE", "20"))
MAX_OVERFLOW = int(os.environ.get("SEED_MAX_OVERFLOW", "0"))
# arq polls its queue every poll_delay seconds (default 0.5) and takes at most
# queue_read_limit (100) jobs per poll, which caps a default worker near 200 jobs/s. The bench
# sets it low so arq is measured at its best, not at a default meant for idle queues.
ARQ_POLL_DELAY = float(os.environ.get("SEED_ARQ_POLL_DELAY", "0.5"))


def job_id() -> str:
    """An arq job id under our prefix (arq keys jobs as ``arq:job:<id>``)."""
    return f"{PREFIX}-{os.urandom(8).hex()}"
