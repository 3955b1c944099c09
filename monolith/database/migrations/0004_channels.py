"""Pub/sub through the database (the channels backend used when MONOLITH_CHANNELS_URL is empty).

Publishers take ids from channel_head, whose one row they update: the row lock serializes
publishers, so ids are gap-free and commit in id order, and a subscriber polling
"id > last seen" never skips a message that commits late (a sequence would not promise
that). Old rows are trimmed by age.

Revision: 0004
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BIGINT, BYTES, ID, INT, TEXT, TIME

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "channel_head",
        sa.Column("id", INT, sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
        sa.Column("last_id", BIGINT, nullable=False),
    )
    op.execute("INSERT INTO channel_head (id, last_id) VALUES (1, 0)")
    op.create_table(
        "channel_messages",
        # Ids come from channel_head, never from the database: no identity here.
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("channel", TEXT, nullable=False),
        sa.Column("payload", BYTES, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("channel_messages_channel", "channel_messages", ["channel", "id"])
    op.create_index("channel_messages_created", "channel_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("channel_messages_created", "channel_messages")
    op.drop_index("channel_messages_channel", "channel_messages")
    op.drop_table("channel_messages")
    op.drop_table("channel_head")
