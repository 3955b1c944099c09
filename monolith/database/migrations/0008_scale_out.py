"""Live events that resume (Last-Event-ID): trimming remembers the last message id it removed,
so a replay after an older id knows that messages are missing and says "reset" instead.

Revision: 0008
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BIGINT

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column(
        "channel_head",
        sa.Column("trimmed_id", BIGINT, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # Both databases drop a column in place (SQLite since 3.35), keeping channel_head's CHECK.
    op.execute("ALTER TABLE channel_head DROP COLUMN trimmed_id")
