"""Jobs: fewer indexes on the jobs table, so a claim walks the claim index and every state
change updates fewer indexes (monolith/jobqueue).

Dropped: ``jobs_state_name`` and ``jobs_state_queue``, whose ``state = ?`` prefix the planner
took for the claim (every queued row read and sorted, ~5 ms per claim of 100 behind 20,000
queued jobs on SQLite, instead of the first 100 entries of ``jobs_claim``), and
``jobs_worker``: a runner's jobs are found by scanning ``jobs_running``, which holds the
running jobs only. Counts per state and queue read the partial indexes: queued ones
``jobs_claim``, running ones ``jobs_running``, finished ones ``jobs_finished``, which now
carries the queue too.

Revision: 0013
"""

from alembic import op

from monolith.database.schema import where

revision = "0013"
down_revision = "0012"

_FINISHED = "finished_at IS NOT NULL"


def upgrade() -> None:
    op.drop_index("jobs_state_name", "jobs")
    op.drop_index("jobs_state_queue", "jobs")
    op.drop_index("jobs_worker", "jobs")
    op.drop_index("jobs_finished", "jobs")
    op.create_index("jobs_finished", "jobs", ["state", "finished_at", "queue"], **where(_FINISHED))


def downgrade() -> None:
    op.drop_index("jobs_finished", "jobs")
    op.create_index("jobs_finished", "jobs", ["state", "finished_at"], **where(_FINISHED))
    op.create_index("jobs_worker", "jobs", ["worker"], **where("state = 'running'"))
    op.create_index("jobs_state_queue", "jobs", ["state", "queue"])
    op.create_index("jobs_state_name", "jobs", ["state", "name"])
