-- Jobs that scale out (monolith/jobqueue): finished jobs kept, queue controls, rescues.
-- Ids already come from an identity, which never hands one out twice. New columns:
--   unique_hold  the unique key while it is held (queued, running, and done within hold_for);
--                NULL once the key is free again (failed, cancelled, the hold over)
--   hold_for     a done job keeps its key this many seconds after it ends (NULL: not at all)
--   rescues      times the job's runner died holding it (does not use up an attempt)
--   cancel_at    when a cancel was asked for a running job (its runner tells the job)
--   finished_at  when it ended done, failed or cancelled (retention counts from here)
-- state: queued | running | done | failed | cancelled
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

-- Queue controls that hold for every process and survive restarts.
CREATE TABLE job_queues (
    name       TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at DOUBLE PRECISION NOT NULL
);
