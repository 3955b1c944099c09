"""The catalog.

Revision: 0001
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BIGINT, TEXT, TIME, id_column

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "products",
        id_column(),
        sa.Column("name", TEXT, nullable=False),
        sa.Column("description", TEXT, nullable=False, server_default=""),
        sa.Column("price_cents", BIGINT, sa.CheckConstraint("price_cents >= 0"), nullable=False),
        sa.Column(
            "stock",
            BIGINT,
            sa.CheckConstraint("stock >= 0"),
            nullable=False,
            server_default=sa.text("0"),
        ),
        sa.Column("image_key", TEXT),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("products")
