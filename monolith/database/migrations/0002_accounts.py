"""Accounts: email is stored lowercased and unique; the hash is argon2id (PHC string).

Revision: 0002
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import TEXT, TIME, id_column

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "users",
        id_column(),
        sa.Column("email", TEXT, nullable=False, unique=True),
        sa.Column("password_hash", TEXT, nullable=False),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("bio", TEXT, nullable=False, server_default=""),
        sa.Column(
            "role",
            TEXT,
            sa.CheckConstraint("role IN ('user', 'admin')"),
            nullable=False,
            server_default="user",
        ),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("users")
