-- Jobs that scale out (monolith/jobqueue): ids never reused, finished jobs kept, queue controls.
-- The jobs table is rebuilt (SQLite cannot change a primary key or a CHECK in place) with
-- AUTOINCREMENT, so an id is never handed out twice even after its row is pruned; every row
-- moves over with its id. New columns:
--   unique_hold  the unique key while it is held (queued, running, and done within hold_for);
--                NULL once the key is free again (failed, cancelled, the hold over)
--   hold_for     a done job keeps its key this many seconds after it ends (NULL: not at all)
--   rescues      times the job's runner died holding it (does not use up an attempt)
--   cancel_at    when a cancel was asked for a running job (its runner tells the job)
--   finished_at  when it ended done, failed or cancelled (retention counts from here)
-- state: queued | running | done | failed | cancelled
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
-- Claims walk this in order (higher priority first, then oldest due) and skip the not-yet-due.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
-- Expired leases (a runner died), a runner's own jobs, and running counts per name and queue.
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'running';
CREATE INDEX jobs_state_name ON jobs (state, name);
CREATE INDEX jobs_state_queue ON jobs (state, queue);
-- Pruning and `jobs list --state done`: finished jobs by when they ended.
CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE finished_at IS NOT NULL;

-- Queue controls that hold for every process and survive restarts.
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    updated_at REAL    NOT NULL
);
