"""The seed articles' stack, written the way they describe it.

FastAPI on uvicorn (``uvicorn main:app``, several workers), PostgreSQL through SQLAlchemy's
async engine on asyncpg, the articles' Redis ``@cached`` decorator for reads with explicit
invalidation on write, sessions in Redis (the checklist's fix for sticky sessions), and arq on
Redis for background jobs (``arq app.worker.WorkerSettings``, a separate process).

It serves the same routes, schema and JSON shapes as ``monolith`` so the same load scripts
drive both. Settings come from ``SEED_*`` environment variables set by the harness; every
Redis key lives under ``SEED_PREFIX`` (arq's own ``arq:job:`` keys use job ids that start with
it), so the harness can delete them all afterwards.
"""
