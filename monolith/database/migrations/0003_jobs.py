"""The durable job queue (monolith/jobqueue). Times are epoch seconds passed from Python.

state: queued (waiting for run_at) | running (leased to ``worker`` until lease_until)
     | failed (out of attempts; kept with its error for retry or discard)
     | done (kept only while its unique key must keep deduplicating).

Revision: 0003
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BIGINT, INT, TEXT, TIME, id_column, where

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "jobs",
        id_column(),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("queue", TEXT, nullable=False, server_default="default"),
        sa.Column("payload", TEXT, nullable=False, server_default="null"),
        sa.Column(
            "state",
            TEXT,
            sa.CheckConstraint("state IN ('queued', 'running', 'failed', 'done')"),
            nullable=False,
            server_default="queued",
        ),
        sa.Column("priority", INT, nullable=False, server_default=sa.text("0")),
        sa.Column("run_at", TIME, nullable=False),
        sa.Column("attempts", INT, nullable=False, server_default=sa.text("0")),
        sa.Column("max_attempts", INT, nullable=False, server_default=sa.text("5")),
        sa.Column("unique_key", TEXT, unique=True),
        sa.Column("worker", TEXT),
        sa.Column("lease_until", TIME),
        sa.Column("last_error", TEXT),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    # Claims walk this in order (higher priority first, then oldest due), skipping the not-due.
    op.create_index(
        "jobs_claim",
        "jobs",
        [sa.text("priority DESC"), "run_at", "id"],
        **where("state = 'queued'"),
    )
    # Expired leases (a runner died) and per-name concurrency counts.
    op.create_index("jobs_running", "jobs", ["lease_until"], **where("state = 'running'"))
    op.create_index("jobs_state_name", "jobs", ["state", "name"])

    # Runners alive (one row per runner process), for /health/ready and `jobs stats`.
    op.create_table(
        "job_runners",
        sa.Column("id", TEXT, primary_key=True),
        sa.Column("host", TEXT, nullable=False),
        sa.Column("pid", INT, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("seen_at", TIME, nullable=False),
        sa.Column("progress_at", TIME, nullable=False),
        sa.Column("completed", BIGINT, nullable=False, server_default=sa.text("0")),
    )

    # The last fire of each recurring schedule, so fires missed while no process was leader
    # are detected on the next start and coalesced into one.
    op.create_table(
        "job_schedules",
        sa.Column("name", TEXT, primary_key=True),
        sa.Column("last_fire_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_schedules")
    op.drop_table("job_runners")
    op.drop_index("jobs_state_name", "jobs")
    op.drop_index("jobs_running", "jobs")
    op.drop_index("jobs_claim", "jobs")
    op.drop_table("jobs")
