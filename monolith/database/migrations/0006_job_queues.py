"""Jobs that scale out (monolith/jobqueue): ids never reused, finished jobs kept, queue controls.

New columns on jobs: ``unique_hold`` (the unique key while it is held), ``hold_for``,
``rescues``, ``cancel_at``, ``finished_at``; the state ``cancelled``; the table job_queues.

Converted from the SQL files each database had (kept, as they were applied, in
tests/data/legacy_migrations/): the steps differ by database (SQLite rebuilds the table with
AUTOINCREMENT so an id is never handed out twice; PostgreSQL's identity already never does),
so they stay SQL, run for the database at hand. The resulting schemas are the same
(tests/test_migrations.py compares them).

Revision: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"

_SQLITE_UP = """
CREATE TABLE jobs_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    queue        TEXT    NOT NULL DEFAULT 'default',
    payload      TEXT    NOT NULL DEFAULT 'null',
    state        TEXT    NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority     INTEGER NOT NULL DEFAULT 0,
    run_at       REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5,
    unique_key   TEXT,
    worker       TEXT,
    lease_until  REAL,
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    unique_hold  TEXT    UNIQUE,
    hold_for     REAL,
    rescues      INTEGER NOT NULL DEFAULT 0,
    cancel_at    REAL,
    finished_at  REAL
);
INSERT INTO jobs_new (id, name, queue, payload, state, priority, run_at, attempts, max_attempts,
                      unique_key, worker, lease_until, last_error, created_at, updated_at,
                      unique_hold, hold_for, finished_at)
SELECT id, name, queue, payload, state, priority, run_at, attempts, max_attempts,
       unique_key, worker, lease_until, last_error, created_at, updated_at,
       CASE WHEN state = 'failed' THEN NULL ELSE unique_key END,
       CASE WHEN state = 'done' THEN 86400 END,
       CASE WHEN state IN ('done', 'failed') THEN updated_at END
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
CREATE INDEX jobs_state_name ON jobs (state, name);
CREATE INDEX jobs_state_queue ON jobs (state, queue);
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at REAL    NOT NULL
);
"""

_SQLITE_DOWN = """
DROP TABLE job_queues;
CREATE TABLE jobs_old (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    queue        TEXT    NOT NULL DEFAULT 'default',
    payload      TEXT    NOT NULL DEFAULT 'null',
    state        TEXT    NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'failed', 'done')),
    priority     INTEGER NOT NULL DEFAULT 0,
    run_at       REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5,
    unique_key   TEXT    UNIQUE,
    worker       TEXT,
    lease_until  REAL,
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL
);
INSERT INTO jobs_old (id, name, queue, payload, state, priority, run_at, attempts, max_attempts,
                      unique_key, worker, lease_until, last_error, created_at, updated_at)
SELECT id, name, queue, payload, CASE WHEN state = 'cancelled' THEN 'failed' ELSE state END,
       priority, run_at, attempts, max_attempts,
       CASE WHEN unique_hold IS NULL THEN NULL ELSE unique_key END,
       worker, lease_until, last_error, created_at, updated_at
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_old RENAME TO jobs;
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state_name ON jobs (state, name);
"""

_POSTGRES_UP = """
ALTER TABLE jobs ADD COLUMN unique_hold TEXT;
ALTER TABLE jobs ADD COLUMN hold_for DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN rescues INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN finished_at DOUBLE PRECISION;
UPDATE jobs SET
    unique_hold = CASE WHEN state = 'failed' THEN NULL ELSE unique_key END,
    hold_for = CASE WHEN state = 'done' THEN 86400 END,
    finished_at = CASE WHEN state IN ('done', 'failed') THEN updated_at END;
ALTER TABLE jobs DROP CONSTRAINT jobs_unique_key_key;
ALTER TABLE jobs ADD CONSTRAINT jobs_unique_hold_key UNIQUE (unique_hold);
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled'));
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
CREATE INDEX jobs_state_queue ON jobs (state, queue);
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at DOUBLE PRECISION NOT NULL
);
"""

_POSTGRES_DOWN = """
DROP TABLE job_queues;
DROP INDEX jobs_finished;
DROP INDEX jobs_state_queue;
DROP INDEX jobs_worker;
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
UPDATE jobs SET state = 'failed' WHERE state = 'cancelled';
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'running', 'failed', 'done'));
ALTER TABLE jobs DROP CONSTRAINT jobs_unique_hold_key;
UPDATE jobs SET unique_key = NULL WHERE unique_hold IS NULL;
ALTER TABLE jobs ADD CONSTRAINT jobs_unique_key_key UNIQUE (unique_key);
ALTER TABLE jobs DROP COLUMN finished_at;
ALTER TABLE jobs DROP COLUMN cancel_at;
ALTER TABLE jobs DROP COLUMN rescues;
ALTER TABLE jobs DROP COLUMN hold_for;
ALTER TABLE jobs DROP COLUMN unique_hold;
"""


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(_SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRES_UP)


def downgrade() -> None:
    _run(_SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRES_DOWN)
