-- The durable job queue (monolith/jobqueue). Times are epoch seconds passed from Python.
-- state: queued (waiting for run_at) | running (leased to `worker` until lease_until)
--      | failed (out of attempts; kept with its error for retry or discard)
--      | done (kept only while its unique key must keep deduplicating).
CREATE TABLE jobs (
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
-- Claims walk this in order (higher priority first, then oldest due) and skip the not-yet-due.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
-- Expired leases (a runner died) and per-name concurrency counts.
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_state_name ON jobs (state, name);

-- Runners alive (one row per runner process), for /health/ready and `jobs stats`.
CREATE TABLE job_runners (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    seen_at     REAL NOT NULL,
    progress_at REAL NOT NULL,
    completed   INTEGER NOT NULL DEFAULT 0
);

-- The last fire of each recurring schedule, so fires missed while no process was leader
-- are detected on the next start and coalesced into one.
CREATE TABLE job_schedules (
    name         TEXT PRIMARY KEY,
    last_fire_at REAL NOT NULL
);
